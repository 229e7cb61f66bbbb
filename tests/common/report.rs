//! Rows for the reliability report (`scripts/reliability-report.sh`): each scenario a test runs
//! appends one tab-separated line — kind, scenario, outcome, detail — to a file under
//! `DBCONN_REPORT_DIR` (default `/tmp/dbconn-report`). The script prints them as a table.
//! A row is written only after the test's assertions for that scenario passed, so a row that
//! says `survived` or `refused` is a checked result, never a hope.

use std::{io::Write, path::PathBuf};

pub fn dir() -> PathBuf {
    std::env::var_os("DBCONN_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dbconn-report"))
}

/// Appends one row. `kind` groups rows (`fault`, `load`, `bad-input`, `fuzz`, `security`);
/// tabs and newlines in the fields are replaced so that a row stays one line.
pub fn record(kind: &str, scenario: &str, outcome: &str, detail: &str) {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create the report directory");
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let line = format!(
        "{}\t{}\t{}\t{}\n",
        clean(kind),
        clean(scenario),
        clean(outcome),
        clean(detail)
    );
    let file = dir.join(format!("{}.tsv", clean(kind)));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
}
