//! Every state the real operator writes, read by kstatus, Argo CD's health check and the README's
//! Flux entry: they must agree, and say what the README says.

use serde_json::Value;

use super::judges::{Verdicts, judge, kstatus_for};
use crate::{
    check_real_metrics,
    common::{
        Harness, TestEnv, free_port, kubectl_ok,
        neo4j::{create_user, unique_user},
        neo4j_connection_yaml, secret_yaml,
    },
};

fn get_json(ns: &str, name: &str) -> Value {
    let text = kubectl_ok(&["get", "dbconn", name, "-n", ns, "-o", "json"], None);
    serde_json::from_str(&text).expect("kubectl prints JSON")
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn message(obj: &Value, type_: &str) -> String {
    condition(obj, type_).map_or(String::new(), |c| c["message"].as_str().unwrap().to_owned())
}

/// One row of the report: what each judge said.
fn row(name: &str, v: &Verdicts) -> String {
    format!(
        "{name:<12} argocd {:<11} kstatus {:<10} flux-kstatus {:<10} flux-cel {:<10} | {}",
        v.argocd.status,
        v.kstatus.status,
        v.flux_kstatus.status,
        v.flux_cel.status,
        v.argocd.message
    )
}

#[tokio::test]
async fn every_state_the_operator_writes_is_read_alike_by_kstatus_argo_cd_and_flux() {
    let mut h = Harness::start("gitops").await;
    let env = TestEnv::get();
    let user = unique_user("gitops");
    create_user(&user, "right-password-1").await;
    let login = "login";
    h.apply(&secret_yaml(
        login,
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&secret_yaml("bad-login", &user, "wrong-password-1"));
    let nothing_listens = format!("bolt://127.0.0.1:{}", free_port());
    for (name, uri, secret) in [
        ("ready", env.neo4j_uri(), login),
        ("authfail", env.neo4j_uri(), "bad-login"),
        ("nosecret", env.neo4j_uri(), "not-created-yet"),
        ("unreachable", nothing_listens.as_str(), login),
    ] {
        h.apply(&neo4j_connection_yaml(name, uri, secret));
    }
    // Past the apiserver's checks but refused by the operator: the default binding name is the
    // CA Secret it reads.
    h.apply(&format!(
        "{}  binding: {{}}\n  tls:\n    caSecretRef:\n      name: invalid-binding\n",
        neo4j_connection_yaml("invalid", "bolt+s://127.0.0.1:1", login)
    ));
    h.apply(&format!(
        "{}  suspend: true\n",
        neo4j_connection_yaml("suspended", env.neo4j_uri(), login)
    ));

    // (name, the condition that marks the state, Argo CD health, text in its message)
    let states = [
        (
            "ready",
            ("Ready", "True", "Connected"),
            "Healthy",
            "Connected to Neo4j",
        ),
        (
            "authfail",
            ("Stalled", "True", "AuthenticationFailed"),
            "Degraded",
            "Secret",
        ),
        (
            "nosecret",
            ("Reconciling", "True", "SecretNotFound"),
            "Progressing",
            "not-created-yet",
        ),
        (
            "unreachable",
            ("Reconciling", "True", "Unreachable"),
            "Progressing",
            "retrying",
        ),
        (
            "invalid",
            ("Stalled", "True", "InvalidSpec"),
            "Degraded",
            "Fix the manifest",
        ),
        (
            "suspended",
            ("Reachable", "Unknown", "Suspended"),
            "Suspended",
            "spec.suspend to false",
        ),
    ];
    for (name, (type_, status, reason), ..) in states {
        h.wait(name, type_, status, Some(reason)).await;
    }
    let objects: Vec<Value> = states.iter().map(|s| get_json(&h.ns, s.0)).collect();
    let verdicts = judge(&objects);
    let mut report = Vec::new();
    for ((name, _, health, text), (obj, v)) in states.iter().zip(objects.iter().zip(&verdicts)) {
        report.push(row(name, v));
        assert_eq!(
            v.argocd.status, *health,
            "{name}: Argo CD health of\n{obj:#}"
        );
        assert!(
            v.argocd.message.contains(text),
            "{name}: {:?} lacks {text:?}",
            v.argocd.message
        );
        let flux = kstatus_for(health);
        assert_eq!(v.kstatus.status, flux, "{name}: kstatus of\n{obj:#}");
        assert_eq!(
            v.flux_kstatus, v.kstatus,
            "{name}: Flux's kstatus fork differs"
        );
        assert_eq!(
            v.flux_cel.status, flux,
            "{name}: the README's Flux entry: {:?}",
            v.flux_cel
        );
        assert_eq!(v.flux_cel.error, "", "{name}");
        // The message people see: Ready's, or for a suspended one Reachable's (it has no Ready).
        match *health {
            "Healthy" | "Degraded" => assert_eq!(v.argocd.message, message(obj, "Ready"), "{name}"),
            "Suspended" => assert_eq!(v.argocd.message, message(obj, "Reachable"), "{name}"),
            _ => {}
        }
        if flux == "Failed" {
            assert_eq!(v.kstatus.message, message(obj, "Stalled"), "{name}");
        }
    }

    // Suspended: never Ready (not even False or Unknown, which kstatus reads as InProgress),
    // and nothing claimed about a server nobody probes.
    let suspended = &objects[5];
    assert!(condition(suspended, "Ready").is_none(), "{suspended:#}");
    for type_ in ["Reachable", "CredentialsValid"] {
        let c = condition(suspended, type_).unwrap();
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&"Unknown".into(), &"Suspended".into())
        );
    }
    for type_ in ["Reconciling", "Stalled"] {
        assert!(
            condition(suspended, type_).is_none(),
            "{type_}: {suspended:#}"
        );
    }

    check_real_metrics(&h).await;

    // With the operator stopped, a spec change stays unobserved and a new object gets no status.
    h.operator.kill();
    kubectl_ok(
        &[
            "patch",
            "dbconn",
            "ready",
            "-n",
            &h.ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"healthCheck":{"interval":"6s"}}}"#,
        ],
        None,
    );
    h.apply(&neo4j_connection_yaml("fresh", env.neo4j_uri(), login));
    let changed = get_json(&h.ns, "ready");
    let fresh = get_json(&h.ns, "fresh");
    assert_eq!(changed["metadata"]["generation"], 2);
    assert!(fresh["status"].is_null(), "{fresh:#}");
    let after = judge(&[changed, fresh]);
    let (changed, fresh) = (&after[0], &after[1]);
    report.push(row("changed", changed));
    report.push(row("fresh", fresh));
    assert_eq!(changed.argocd.status, "Progressing");
    assert!(
        changed.argocd.message.contains("generation 2"),
        "{:?}",
        changed.argocd
    );
    assert_eq!(
        (
            changed.kstatus.status.as_str(),
            changed.kstatus.message.as_str()
        ),
        (
            "InProgress",
            "DatabaseConnection generation is 2, but latest observed generation is 1"
        )
    );
    assert_eq!(changed.flux_cel.status, "InProgress");
    // No status yet: Argo CD waits; kstatus has nothing to go on and calls it Current (the gap
    // the README's Flux entry closes); the entry's expressions cannot read the missing status,
    // which Flux reports and keeps waiting on.
    assert_eq!(fresh.argocd.status, "Progressing");
    assert_eq!(fresh.kstatus.status, "Current");
    assert_eq!(fresh.flux_cel.status, "Unknown");
    assert!(
        fresh.flux_cel.error.contains("no such attribute"),
        "{:?}",
        fresh.flux_cel
    );
    println!("{}", report.join("\n"));
}
