//! `wasm-exports keep LIST IN OUT` writes IN with only LIST's exports to OUT (through a temporary
//! file, so OUT may be IN or a hard link to it); `wasm-exports list IN` prints IN's exports.

use scopegate_wasm_exports::{exports, keep_only, parse_list};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: wasm-exports keep LIST IN OUT | wasm-exports list IN";

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn keep(list: &str, input: &str, output: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let names = parse_list(&text).map_err(|e| format!("{list}: {e}"))?;
    let module = read(input)?;
    let before = exports(&module).map_err(|e| format!("{input}: {e}"))?.len();
    let out = keep_only(&module, &names).map_err(|e| format!("{input}: {e}"))?;
    let tmp = Path::new(output).with_extension("wasm.tmp");
    std::fs::write(&tmp, &out).map_err(|e| format!("{}: {e}", tmp.display()))?;
    // A rename replaces the path instead of writing through a hard link to cargo's own copy.
    std::fs::rename(&tmp, output).map_err(|e| format!("{output}: {e}"))?;
    println!(
        "    {output}: kept {} of {before} exports ({list})",
        names.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["keep", list, input, output] => keep(list, input, output),
        ["list", input] => read(input).and_then(|m| {
            exports(&m)
                .map(|es| es.iter().for_each(|e| println!("{}", e.name)))
                .map_err(|e| format!("{input}: {e}"))
        }),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-exports: {e}");
            ExitCode::FAILURE
        }
    }
}
