//! The client matrix: every cell run against one mode's stack, checked, printed as a table.

use super::check::{check, Outcome};
use super::host::{run, Cell, Run, Target};
use crate::procs::log_dir;

/// Runs every cell against `target`, a few at a time (most of a run is waiting), checks each,
/// prints the matrix, and fails if any cell did not end as expected.
pub fn run_matrix(target: &Target, cells: &[Cell]) -> Vec<(Cell, Result<Outcome, String>)> {
    let mut results = Vec::new();
    for chunk in cells.chunks(3) {
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|c| scope.spawn(move || run(target, *c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("client run"))
                .collect()
        });
        for r in runs {
            let verdict = check(target, &r);
            results.push((r.cell, verdict));
        }
    }
    // The matrix, on stderr and in target/it-logs/<dir>/matrix.txt.
    let mut table = format!("SDK client matrix, {} mode:\n", target.mode);
    for (cell, verdict) in &results {
        let (pkg, version) = cell.sdk.package();
        table.push_str(&format!(
            "  {:<28} {pkg}@{version}: {}\n",
            cell.name(),
            match verdict {
                Ok(Outcome::Pass) => "pass".to_string(),
                Ok(Outcome::ExpectedFailure(why)) => format!("expected failure ({why})"),
                Err(e) => format!("FAILED: {e}"),
            }
        ));
    }
    eprint!("{table}");
    let _ = std::fs::write(log_dir(target.dir).join("matrix.txt"), &table);
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(c, v)| v.as_ref().err().map(|e| format!("{}: {e}", c.name())))
        .collect();
    assert!(
        failed.is_empty(),
        "{} mode: cells failed (wire logs in target/it-logs/{}/):\n{}",
        target.mode,
        target.dir,
        failed.join("\n")
    );
    results
}
