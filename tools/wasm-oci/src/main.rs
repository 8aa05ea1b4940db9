//! `wasm-oci`: the filter's `.wasm` as an OCI image layout, in the "compat" form Istio's and Envoy
//! Gateway's image fetchers read: one `tar+gzip` layer holding `plugin.wasm`.
//!
//! The output is deterministic (fixed times and owners, sorted entries): the same `.wasm` always
//! gives the same manifest digest, which is what the mesh manifests pin.

mod layout;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: wasm-oci --wasm FILE --out DIR [--tar FILE] [--tag TAG]

Writes an OCI image layout in DIR (oci-layout, index.json, blobs/sha256/*) whose only layer is
an application/vnd.oci.image.layer.v1.tar+gzip holding plugin.wasm, and with --tar the same
layout as one tar file (an oci-archive). Prints the manifest digest the mesh manifests pin.
Exit codes: 0 written, 1 cannot read or write, 2 usage error.";

struct Args {
    wasm: PathBuf,
    out: PathBuf,
    tar: Option<PathBuf>,
    tag: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut wasm, mut out, mut tar, mut tag) = (None, None, None, "latest".to_string());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--wasm" => wasm = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            "--tar" => tar = Some(PathBuf::from(value)),
            "--tag" => tag = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args {
        wasm: wasm.ok_or("--wasm is required")?,
        out: out.ok_or("--out is required")?,
        tar,
        tag,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let wasm = match std::fs::read(&a.wasm) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", a.wasm.display());
            return ExitCode::from(1);
        }
    };
    let image = match layout::Image::build(&wasm, &a.tag) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = image.write_dir(&a.out) {
        eprintln!("error: cannot write {}: {e}", a.out.display());
        return ExitCode::from(1);
    }
    if let Some(tar) = &a.tar {
        if let Err(e) = image.write_tar(tar) {
            eprintln!("error: cannot write {}: {e}", tar.display());
            return ExitCode::from(1);
        }
    }
    println!("wasm sha256: {}", image.wasm_sha256);
    println!("layout: {} (tag {})", a.out.display(), a.tag);
    if let Some(tar) = &a.tar {
        println!("archive: {}", tar.display());
    }
    println!("manifest digest: {}", image.manifest_digest);
    ExitCode::SUCCESS
}
