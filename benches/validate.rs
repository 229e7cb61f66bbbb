//! How fast `dbconn-operator validate` checks a GitOps repository: 1,000 DatabaseConnections,
//! valid ones from `examples/` and broken ones from `tests/corpus/`, in 1,000 files.
//! Needs nothing running: `cargo bench --bench validate`.
//!
//! Prints the wall-clock time of the whole command (process start, CRD and rule compilation,
//! reading, checking, printing) and of the checking alone through the library, over several runs.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dbconn_operator::validate::{self, Checker, Report};

const MANIFESTS: usize = 1000;
const RUNS: usize = 7;

/// The DatabaseConnection documents of the examples and the corpus, each renamed uniquely.
fn manifests() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut templates = Vec::new();
    for dir in ["examples", "tests/corpus"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            templates.extend(
                text.split("\n---\n")
                    .filter(|doc| doc.contains("kind: DatabaseConnection"))
                    .map(str::to_owned),
            );
        }
    }
    (0..MANIFESTS)
        .map(|i| {
            let doc = &templates[i % templates.len()];
            let name = doc
                .lines()
                .find_map(|l| l.strip_prefix("  name: "))
                .expect("a name");
            doc.replacen(
                &format!("  name: {name}"),
                &format!("  name: {name}-{i}"),
                1,
            )
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[0])
}

fn main() {
    let docs = manifests();
    let dir = std::env::temp_dir().join(format!("dbconn-validate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(dir.join(format!("m{i:04}.yaml")), doc).unwrap();
    }

    let mut command_times = Vec::new();
    let mut problems = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_dbconn-operator"))
            .args(["validate", "-f"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run validate");
        command_times.push(started.elapsed());
        problems = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(
            out.status.code(),
            Some(1),
            "the corpus has problems to find"
        );
    }

    let mut check_times = Vec::new();
    let mut checked = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let checker = Checker::default();
        let mut report = Report::default();
        for (i, doc) in docs.iter().enumerate() {
            validate::check_text(&checker, &format!("m{i}.yaml"), doc, &mut report);
        }
        check_times.push(started.elapsed());
        checked = report.checked;
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let (command_median, command_min) = median(command_times);
    let (check_median, check_min) = median(check_times);
    println!("validate: {MANIFESTS} DatabaseConnections in {MANIFESTS} files, {RUNS} runs");
    println!("| measure | median | min |");
    println!("| --- | --- | --- |");
    println!(
        "| `dbconn-operator validate -f DIR` (whole command) | {command_median:.1?} | {command_min:.1?} |"
    );
    println!(
        "| checking alone (library, {checked} documents) | {check_median:.1?} | {check_min:.1?} |"
    );
    println!("problems reported per run: {problems}");
}
