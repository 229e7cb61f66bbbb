//! Installing the Argo CD health check into argocd-cm, the way the chart README says.

use std::process::Command;

use serde_json::Value;

use super::{judges::health_lua, readme::code_block};
use crate::common::{TestEnv, kubectl_ok};

const CHART_README: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/dbconn-operator/README.md"
);
const ARGOCD_KEY: &str = "resource.customizations.health.dbconn.dev_DatabaseConnection";

#[test]
fn readme_install_command_adds_the_health_check_to_an_existing_argocd_cm() {
    let readme = std::fs::read_to_string(CHART_README).unwrap();
    let script = health_lua();
    let relative = script
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches('/');
    assert!(
        readme.contains(ARGOCD_KEY) && readme.contains(relative),
        "the chart README names the key and {relative}"
    );

    // An argocd-cm as an Argo CD install leaves it: other keys, its label, client-side applied.
    let ns = format!("gitops-argocd-{:08x}", rand::random::<u32>());
    kubectl_ok(&["create", "namespace", &ns], None);
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  labels:\n    app.kubernetes.io/part-of: argocd\ndata:\n  url: https://argocd.example.com\n",
        ),
    );

    // The README's command, verbatim, with -n argocd pointing at this test's namespace.
    let command = code_block(&readme, "sh", "patch configmap argocd-cm")
        .replace("-n argocd", &format!("-n {ns}"));
    let env = TestEnv::get();
    let path = format!(
        "{}:{}",
        env.var("TESTENV_BIN_DIR"),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the README command failed:\n{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cm: Value = serde_json::from_str(&kubectl_ok(
        &["-n", &ns, "get", "configmap", "argocd-cm", "-o", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        cm["data"][ARGOCD_KEY].as_str().unwrap(),
        std::fs::read_to_string(&script).unwrap()
    );
    assert_eq!(
        cm["data"]["url"], "https://argocd.example.com",
        "other keys are kept"
    );
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "argocd"
    );
}
