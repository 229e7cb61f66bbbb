//! The three judges of a DatabaseConnection's health, as the tools themselves compute it: the Go
//! program in `tests/gitops/judges` (built and cached by `tests/testenv/testenv.sh judges`) runs
//! kstatus (sigs.k8s.io/cli-utils, and Flux's fork of it), Argo CD's health.lua in gopher-lua the
//! way Argo CD runs an argocd-cm script, and the README's Flux `healthCheckExprs` in Flux's own
//! CEL status reader.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::Value;

use super::readme::code_block;

/// Argo CD's resource_customizations layout: health.lua, health_test.yaml, testdata/.
pub const HEALTH_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/dbconn-operator/argocd/dbconn.dev/DatabaseConnection"
);
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const TESTENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testenv/testenv.sh");

pub fn health_lua() -> PathBuf {
    Path::new(HEALTH_DIR).join("health.lua")
}

/// One judge's answer; `error` when it could not decide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Verdict {
    pub status: String,
    pub message: String,
    pub error: String,
}

/// Every judge's answer for one object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdicts {
    pub kstatus: Verdict,
    pub flux_kstatus: Verdict,
    #[serde(default)]
    pub argocd: Verdict,
    #[serde(default)]
    pub flux_cel: Verdict,
}

/// The judges' binary, built by the test environment script unless its cache has this
/// checkout's build.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Command::new("bash")
            .args([TESTENV, "judges"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "`bash tests/testenv/testenv.sh judges` could not build the GitOps judges (a Go \
             program; it needs Go 1.26 and the Go module proxy, as the rest of the test \
             environment does): see its output above"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The Flux Kustomization the README shows, with its `healthCheckExprs` entry.
pub fn readme_kustomization() -> String {
    let readme = std::fs::read_to_string(README).unwrap();
    code_block(&readme, "yaml", "healthCheckExprs:").to_owned()
}

fn readme_kustomization_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "dbconn-gitops-kustomization-{}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, readme_kustomization()).unwrap();
        path
    })
}

/// All judges over `objects`: kstatus, the chart's health.lua and the README's Flux entry.
pub fn judge(objects: &[Value]) -> Vec<Verdicts> {
    judge_with(objects, &health_lua(), Some(readme_kustomization_file()))
}

/// kstatus, the Lua script `health_lua` and, if given, a Kustomization's `healthCheckExprs`.
pub fn judge_with(
    objects: &[Value],
    health_lua: &Path,
    kustomization: Option<&Path>,
) -> Vec<Verdicts> {
    let mut command = Command::new(binary());
    command.arg("-health-lua").arg(health_lua);
    if let Some(kustomization) = kustomization {
        command.arg("-flux-kustomization").arg(kustomization);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the GitOps judges");
    let input = serde_json::to_vec(objects).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the judges failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Verdicts> = serde_json::from_slice(&out.stdout).expect("judges print JSON");
    assert_eq!(verdicts.len(), objects.len());
    verdicts
}

/// What kstatus should say when Argo CD says `argocd`: Healthy and Suspended are done (Flux's
/// `wait` passes), Progressing is still going, Degraded needs a person.
pub fn kstatus_for(argocd: &str) -> &'static str {
    match argocd {
        "Healthy" | "Suspended" => "Current",
        "Progressing" => "InProgress",
        "Degraded" => "Failed",
        other => panic!("no kstatus counterpart for Argo CD health {other:?}"),
    }
}
