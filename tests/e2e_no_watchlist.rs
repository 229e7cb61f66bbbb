//! On an apiserver without streaming lists (the `WatchList` feature is off by default in
//! Kubernetes 1.29 to 1.31 and 1.33) the operator falls back to a plain list and watch for
//! Secrets, says so once, and works as usual: a connection becomes Ready, and a Secret edit is
//! followed both ways through the Secret watch (probes are minutes apart). The apiserver here
//! is a second kube-apiserver on the test environment's etcd, started with the running one's
//! flags, another port and `--feature-gates=WatchList=false`.

mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
};

use common::{
    Harness, TestEnv, eventually, free_port,
    neo4j::{create_user, unique_user},
    neo4j_connection_yaml, secret_yaml,
};

/// The second apiserver, stopped on drop.
struct ExtraApiserver {
    child: Child,
    port: u16,
}

impl ExtraApiserver {
    fn start_without_watchlist() -> Self {
        let env = TestEnv::get();
        let state = Path::new(env.kubeconfig()).parent().unwrap();
        let pid = std::fs::read_to_string(state.join("apiserver.pid")).unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
            .expect("the test environment's apiserver is running");
        let port = free_port();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .skip(1)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .map(|arg| {
                if arg.starts_with("--secure-port=") {
                    format!("--secure-port={port}")
                } else {
                    arg
                }
            })
            .chain(["--feature-gates=WatchList=false".to_owned()])
            .collect();
        let log = std::env::temp_dir().join("dbconn-e2e-apiserver-no-watchlist.log");
        let child = Command::new(env.bin("kube-apiserver"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start a second kube-apiserver");
        Self { child, port }
    }
}

impl Drop for ExtraApiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl_via(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(TestEnv::get().bin("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap()
}

#[tokio::test]
async fn without_streaming_lists_secrets_are_listed_and_watched() {
    let apiserver = ExtraApiserver::start_without_watchlist();
    let kubeconfig =
        std::env::temp_dir().join(format!("dbconn-kubeconfig-no-watchlist-{}", apiserver.port));
    TestEnv::get().kubeconfig_via(apiserver.port, &kubeconfig);
    eventually("the second apiserver to be ready", async || {
        kubectl_via(&kubeconfig, &["get", "--raw", "/readyz"])
            .status
            .success()
    })
    .await;
    // The gate is really off there: a streaming list is refused.
    let refused = kubectl_via(
        &kubeconfig,
        &[
            "get",
            "--raw",
            "/api/v1/secrets?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        ],
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("WatchList"),
        "the second apiserver serves streaming lists; the test would prove nothing"
    );

    let h = Harness::start_via("no-watchlist", &kubeconfig).await;
    let env = TestEnv::get();
    // A user of its own: Neo4j locks a user after failed logins.
    let (user, right) = (unique_user("nowatchlist"), "no-watchlist-right-1");
    create_user(&user, right).await;
    let user = user.as_str();
    h.apply(&secret_yaml("login", user, right));
    // Probes far apart: a Secret edit can only be seen soon through the Secret watch.
    let connection = neo4j_connection_yaml("graph", env.neo4j_uri(), "login");
    h.apply(&connection.replace("interval: 5s", "interval: 5m"));
    h.wait("graph", "Ready", "True", Some("Connected")).await;

    let wrong = "no-watchlist-wrong-1";
    h.apply(&secret_yaml("login", user, wrong));
    h.wait("graph", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    h.apply(&secret_yaml("login", user, right));
    h.wait("graph", "Ready", "True", Some("Connected")).await;

    let fallbacks = h
        .operator
        .logs()
        .matches("does not serve streaming lists")
        .count();
    assert_eq!(fallbacks, 1, "the fallback is announced once");
    for password in [right, wrong] {
        h.assert_secret_never_exposed(password);
    }
    let _ = std::fs::remove_file(&kubeconfig);
}
