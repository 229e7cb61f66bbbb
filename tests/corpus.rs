//! The bad-input corpus (`tests/corpus/*.yaml`) against the real apiserver, a real operator and
//! `dbconn-operator validate`. Each file says in its header what must happen to it:
//!
//! - `expect-apiserver: reject`: `kubectl apply` fails with `expect-message`, and `validate`
//!   rejects it with the same problems, both ways: every problem `validate` reports is in the
//!   apiserver's answer, and every error in the apiserver's answer is one `validate` reports.
//! - `expect-apiserver: accept`: the apiserver stores it, and `validate` reports no problem of
//!   the apiserver's (`source: apiserver`); the operator sets `expect-condition`
//!   (`Type=Status Reason`) with `expect-message` in its message; and `validate` accepts or
//!   rejects it as `expect-validate` says (it rejects what the operator refuses as a spec
//!   problem, with the operator's own message, as `source: operator`).
//!
//! Alongside, a healthy connection must stay Ready, the operator must keep running without a hot
//! retry loop, and no password may surface.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Harness, TestEnv, kubectl, report};
use serde_json::Value;

struct Case {
    name: String,
    description: String,
    manifest: String,
    apiserver_rejects: bool,
    message: String,
    /// `(type, status, reason)` for manifests the apiserver stores.
    condition: Option<(String, String, String)>,
    validate_rejects: bool,
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}:")))
        .map(str::trim)
}

/// The corpus with the test environment's ports and passwords filled in.
fn cases() -> Vec<Case> {
    let env = TestEnv::get();
    let neo4j_endpoint = env.neo4j_uri().split_once("://").expect("NEO4J_URI").1;
    let postgres_endpoint = format!("{}:{}", env.var("POSTGRES_HOST"), env.var("POSTGRES_PORT"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/corpus exists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            let expect = |key| {
                header(&text, key)
                    .unwrap_or_else(|| panic!("{name}: no `# {key}:` header"))
                    .to_owned()
            };
            let apiserver_rejects = match expect("expect-apiserver").as_str() {
                "reject" => true,
                "accept" => false,
                other => panic!("{name}: expect-apiserver {other:?}"),
            };
            let condition = (!apiserver_rejects).then(|| {
                let spec = expect("expect-condition");
                let (type_status, reason) = spec.split_once(' ').expect("Type=Status Reason");
                let (type_, status) = type_status.split_once('=').expect("Type=Status");
                (type_.to_owned(), status.to_owned(), reason.to_owned())
            });
            let validate_rejects = apiserver_rejects || expect("expect-validate") == "reject";
            let manifest = text
                .replace("${NEO4J_PASSWORD}", env.neo4j_password())
                .replace("${POSTGRES_PASSWORD}", env.var("POSTGRES_PASSWORD"))
                .replace("127.0.0.1:17687", neo4j_endpoint)
                .replace("127.0.0.1:15432", &postgres_endpoint);
            Case {
                description: text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("# ")
                    .into(),
                message: expect("expect-message"),
                name,
                manifest,
                apiserver_rejects,
                condition,
                validate_rejects,
            }
        })
        .collect()
}

/// One problem `validate` reports.
struct Finding {
    field: String,
    message: String,
    /// `apiserver` (what `kubectl apply` would refuse) or `operator`.
    source: String,
}

/// `validate --output json` on the manifest; its exit code and findings. It runs with an empty
/// environment (no KUBECONFIG, no HOME): it must need no cluster.
fn validate(manifest: &str) -> (i32, Vec<Finding>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbconn-operator"))
        .env_clear()
        .args(["validate", "-f", "-", "--output", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbconn-operator validate");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Finding {
            field: p["field"].as_str().unwrap().to_owned(),
            message: p["message"].as_str().unwrap().to_owned(),
            source: p["source"].as_str().unwrap().to_owned(),
        })
        .collect();
    (out.status.code().unwrap_or(-1), findings)
}

/// The individual errors in kubectl's answer to a rejected object.
fn apiserver_errors(stderr: &str) -> Vec<String> {
    if let Some((_, list)) = stderr.split_once("strict decoding error: ") {
        return list.trim().split(", ").map(str::to_owned).collect();
    }
    let (_, list) = stderr
        .split_once(" is invalid: ")
        .unwrap_or_else(|| panic!("not a validation error: {stderr}"));
    let list = list.trim_end();
    if list.starts_with('\n') || list.starts_with("\n*") || list.is_empty() {
        list.lines()
            .filter_map(|l| l.strip_prefix("* "))
            .map(str::to_owned)
            .collect()
    } else {
        vec![list.to_owned()]
    }
}

fn check_rejected(ns: &str, case: &Case) {
    let out = kubectl(&["apply", "-n", ns, "-f", "-"], Some(&case.manifest));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{}: the apiserver accepted it",
        case.name
    );
    assert!(
        stderr.contains(&case.message),
        "{}: expected {:?} in the apiserver's answer: {stderr}",
        case.name,
        case.message
    );
    let (code, findings) = validate(&case.manifest);
    assert_eq!(
        code, 1,
        "{}: validate accepted what the apiserver refused",
        case.name
    );
    for Finding {
        field,
        message,
        source,
    } in &findings
    {
        assert_eq!(source, "apiserver", "{}: {field}: {message}", case.name);
        assert!(
            stderr.contains(message) && stderr.contains(field.as_str()),
            "{}: validate says {field}: {message}, which the apiserver does not: {stderr}",
            case.name
        );
    }
    for error in apiserver_errors(&stderr) {
        let reported = findings
            .iter()
            .any(|f| f.message == error || format!("{}: {}", f.field, f.message) == error);
        assert!(
            reported,
            "{}: the apiserver says {error:?}, validate does not: {:?}",
            case.name,
            findings.iter().map(|f| &f.message).collect::<Vec<_>>()
        );
    }
    report::record(
        "bad-input",
        &format!("{}: {}", case.name, case.description),
        "rejected at apply; validate agrees",
        &format!("{} problem(s): {}", findings.len(), case.message),
    );
}

async fn check_refused(h: &Harness, case: &Case) {
    let out = kubectl(&["apply", "-n", &h.ns, "-f", "-"], Some(&case.manifest));
    assert!(
        out.status.success(),
        "{}: the apiserver refused it: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let (type_, status, reason) = case.condition.as_ref().unwrap();
    let object_name = case
        .manifest
        .split("kind: DatabaseConnection")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("  name: ")))
        .unwrap_or_else(|| panic!("{}: no DatabaseConnection name", case.name));
    let obj = h.wait(object_name, type_, status, Some(reason)).await;
    let condition = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == *type_))
        .unwrap();
    assert!(
        condition.message.contains(&case.message),
        "{}: expected {:?} in the {type_} message: {}",
        case.name,
        case.message,
        condition.message
    );
    let (code, findings) = validate(&case.manifest);
    let messages: Vec<_> = findings.iter().map(|f| &f.message).collect();
    // Parity: what the apiserver stores, validate's apiserver checks accept.
    assert!(
        findings.iter().all(|f| f.source == "operator"),
        "{}: the apiserver stored it, but validate says it would not: {messages:?}",
        case.name
    );
    if case.validate_rejects {
        assert_eq!(code, 1, "{}: validate accepted it", case.name);
        assert!(
            messages.iter().any(|m| m.contains(&case.message)),
            "{}: validate does not say {:?}: {messages:?}",
            case.name,
            case.message
        );
    } else {
        assert_eq!(code, 0, "{}: validate refused it: {messages:?}", case.name);
    }
    let verdict = if case.validate_rejects {
        "validate rejects"
    } else {
        "validate accepts"
    };
    report::record(
        "bad-input",
        &format!("{}: {}", case.name, case.description),
        &format!("stored; {type_}={status} {reason}; {verdict}"),
        &condition.message.chars().take(140).collect::<String>(),
    );
}

#[tokio::test]
async fn every_bad_input_gets_a_specific_answer_and_validate_agrees() {
    let mut h = Harness::start("corpus").await;
    let env = TestEnv::get();
    h.ready_neo4j("control", "control-login").await;

    let cases = cases();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    for case in &cases {
        if case.apiserver_rejects {
            check_rejected(&h.ns, case);
        } else {
            check_refused(&h, case).await;
        }
    }

    // Nothing wedged: the operator runs, the healthy connection is still Ready, and the refused
    // ones cost no hot loop (a hot loop reconciles thousands of times in a few seconds).
    assert!(h.operator.is_running(), "the operator exited");
    h.wait("control", "Ready", "True", Some("Connected")).await;
    let before = h.operator.metric("dbconn_reconciles_total").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let reconciles = h.operator.metric("dbconn_reconciles_total").await - before;
    let stored = 1 + cases.iter().filter(|c| !c.apiserver_rejects).count();
    assert!(
        reconciles <= (stored * 4) as f64,
        "{reconciles} reconciles in 10 s for {stored} connections: a retry loop"
    );
    for password in [
        env.neo4j_password(),
        env.var("POSTGRES_PASSWORD"),
        "corpus-wrong-password",
        "from-a-tls-secret",
        "hunter2",
    ] {
        h.assert_secret_never_exposed(password);
    }
    report::record(
        "bad-input",
        "all of the corpus, one operator",
        "no crash, nothing wedged",
        &format!(
            "{} inputs; control connection Ready throughout; {reconciles} reconciles in 10 s for {stored} stored connections",
            cases.len()
        ),
    );
}
