//! The Argo CD health check's own cases (`health_test.yaml`, as Argo CD's resource_customizations
//! tests run them), each also judged by kstatus and the README's Flux entry; and the Lua runtime
//! the judges give the script, which must be no richer than Argo CD's.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::judges::{HEALTH_DIR, Verdict, judge, judge_with, kstatus_for};

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Expected,
    input_path: String,
}

#[derive(Deserialize)]
struct Expected {
    status: String,
    message: String,
}

/// health_test.yaml's cases with their objects (as JSON, the way Argo CD reads YAML).
fn cases() -> Vec<(HealthTest, Value)> {
    let dir = Path::new(HEALTH_DIR);
    let text = std::fs::read_to_string(dir.join("health_test.yaml")).unwrap();
    let tests: HealthTests = serde_saphyr::from_str(&text).expect("health_test.yaml");
    tests
        .tests
        .into_iter()
        .map(|test| {
            let input = std::fs::read_to_string(dir.join(&test.input_path))
                .unwrap_or_else(|e| panic!("{}: {e}", test.input_path));
            let obj: Value = serde_saphyr::from_str(&input).expect("a YAML object");
            (test, obj)
        })
        .collect()
}

#[test]
fn health_test_yaml_passes_in_argo_cds_lua_runtime() {
    let cases = cases();
    let objects: Vec<Value> = cases.iter().map(|(_, obj)| obj.clone()).collect();
    let verdicts = judge(&objects);
    let mut statuses = BTreeSet::new();
    for ((test, _), verdicts) in cases.iter().zip(&verdicts) {
        let expected = Verdict {
            status: test.health_status.status.clone(),
            message: test.health_status.message.clone(),
            error: String::new(),
        };
        assert_eq!(verdicts.argocd, expected, "{}", test.input_path);
        statuses.insert(expected.status);
    }
    let all: BTreeSet<String> = ["Degraded", "Healthy", "Progressing", "Suspended"]
        .map(String::from)
        .into();
    assert_eq!(statuses, all, "health_test.yaml covers every health");

    // Every testdata file is a case, as in Argo CD's repository.
    let used: BTreeSet<String> = cases.iter().map(|(t, _)| t.input_path.clone()).collect();
    let files: BTreeSet<String> = std::fs::read_dir(Path::new(HEALTH_DIR).join("testdata"))
        .unwrap()
        .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(
        used, files,
        "testdata files without a case, or cases without a file"
    );
}

/// Where kstatus and the README's Flux entry part from the Argo CD script, and why.
fn known_divergence(input: &str) -> Option<(&'static str, &'static str)> {
    Some(match input {
        // Nothing written yet: kstatus has nothing to go on and calls it Current; the CEL
        // expressions cannot read a missing `status` and fail, so Flux keeps waiting (below).
        "testdata/progressing_no_status.yaml" => ("Current", ""),
        // No conditions: kstatus again Current; none of the CEL expressions holds: InProgress.
        "testdata/progressing_no_conditions.yaml" => ("Current", "InProgress"),
        // Ready while retrying below the failure threshold: kstatus reads Reconciling=True first.
        "testdata/healthy_retrying_below_threshold.yaml" => ("InProgress", "InProgress"),
        // Ready=False with neither Stalled nor Reconciling (the operator never writes it):
        // kstatus falls back to Ready=False, InProgress.
        "testdata/degraded_not_ready.yaml" => ("InProgress", "InProgress"),
        _ => return None,
    })
}

#[test]
fn kstatus_and_the_flux_entry_read_each_case_like_argo_cd_except_where_documented() {
    let cases = cases();
    let objects: Vec<Value> = cases.iter().map(|(_, obj)| obj.clone()).collect();
    for ((test, _), v) in cases.iter().zip(judge(&objects)) {
        let what = &test.input_path;
        assert_eq!(
            v.flux_kstatus, v.kstatus,
            "{what}: Flux's kstatus fork differs"
        );
        let agreed = kstatus_for(&test.health_status.status);
        let (kstatus, cel) = known_divergence(what).unwrap_or((agreed, agreed));
        assert_eq!(v.kstatus.status, kstatus, "{what}: kstatus {:?}", v.kstatus);
        assert_eq!(
            v.flux_cel.status,
            if cel.is_empty() { "Unknown" } else { cel },
            "{what}"
        );
        if cel.is_empty() {
            assert!(
                v.flux_cel.error.contains("no such attribute"),
                "{what}: {:?}",
                v.flux_cel
            );
        } else {
            assert_eq!(v.flux_cel.error, "", "{what}");
        }
    }
}

/// A script file for the judges, deleted when dropped.
struct Script(PathBuf);

impl Script {
    fn new(name: &str, lua: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("dbconn-gitops-{}-{name}.lua", std::process::id()));
        std::fs::write(&path, lua).unwrap();
        Self(path)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_lua(name: &str, lua: &str) -> Verdict {
    let script = Script::new(name, lua);
    let obj = json!({"apiVersion": "dbconn.dev/v1alpha1", "kind": "DatabaseConnection",
                     "metadata": {"name": "x", "generation": 3}});
    judge_with(&[obj], &script.0, None).remove(0).argocd
}

/// A health.lua that passes here passes in Argo CD only if the judges' Lua has no library that
/// Argo CD leaves out.
#[test]
fn the_lua_runtime_has_only_what_argo_cd_opens() {
    let ok = run_lua(
        "ok",
        "local hs = {}\nhs.status = \"Healthy\"\n\
         hs.message = tostring(obj.metadata.generation) .. table.concat({\"-\", type(os.time())}) \
         .. tostring(require(\"os\").date ~= nil)\nreturn hs\n",
    );
    assert_eq!(
        (ok.status.as_str(), ok.message.as_str(), ok.error.as_str()),
        ("Healthy", "3-numbertrue", "")
    );
    for (library, call) in [
        ("string", "string.format(\"%d\", 1)"),
        ("string methods", "(\"x\"):upper()"),
        ("math", "math.floor(1.5)"),
        ("io", "io.write(\"x\")"),
        ("os beyond time and date", "os.getenv(\"HOME\")"),
        ("debug", "debug.traceback()"),
    ] {
        let got = run_lua(
            "lib",
            &format!("local x = {call}\nreturn {{status = \"Healthy\"}}\n"),
        );
        assert!(!got.error.is_empty(), "{library} is open: {got:?}");
    }
    let invalid = run_lua("invalid", "return {status = \"Fine\", message = \"m\"}\n");
    assert_eq!(
        (invalid.status.as_str(), invalid.message.as_str()),
        ("Unknown", "Lua returned an invalid health status")
    );
}
