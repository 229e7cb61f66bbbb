//! What the benches measure about a process, and the guard that keeps their figures honest.

use std::time::Duration;

use dbconn_operator::api::DatabaseConnection;
use kube::{Api, Client, api::DeleteParams};

use super::{apply, neo4j_connection_yaml};

/// A process's memory (from /proc/PID/status) and CPU time (from /proc/PID/stat), with the peak
/// resident size seen by [`Memory::sample`].
pub struct Memory {
    pid: u32,
    pub peak_rss_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Self {
        Self {
            pid,
            peak_rss_kib: 0,
        }
    }

    pub fn sample(&mut self) {
        self.peak_rss_kib = self.peak_rss_kib.max(self.read("VmRSS:"));
    }

    /// User + system CPU time so far, from /proc/PID/stat (in clock ticks of 1/100 s, the
    /// Linux USER_HZ every architecture reports there).
    pub fn cpu(&self) -> Duration {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path} (did the operator exit?): {e}"));
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // After the command name: state is field 3, utime 14 and stime 15 (1-based).
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&i| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        Duration::from_millis(ticks * 10)
    }

    /// A `kB` field of /proc/PID/status; panics if the process is gone.
    pub fn read(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path} (did the operator exit?): {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }
}

/// How long the canary waits for another operator to write its status.
const CANARY_WAIT: Duration = Duration::from_secs(5);

/// Refuses to measure while another operator reconciles this apiserver's objects (the host
/// operator of `make demo-host` watches every namespace): its work would be counted as ours.
/// A canary connection is created in `ns` before the bench's operator starts; whoever writes
/// its status is another operator.
pub async fn refuse_if_another_operator_reconciles(client: &Client, ns: &str) {
    apply(
        ns,
        &neo4j_connection_yaml("canary", "bolt://127.0.0.1:1", "no-such-secret"),
    );
    tokio::time::sleep(CANARY_WAIT).await;
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), ns);
    let canary = api.get("canary").await.expect("read the canary connection");
    api.delete("canary", &DeleteParams::default())
        .await
        .expect("delete the canary connection");
    if canary.status.is_some() {
        eprintln!(
            "another dbconn-operator reconciles this apiserver's objects (it wrote the status of \
             the canary connection in {ns} within {CANARY_WAIT:?}), so the figures would count \
             its work as this operator's. Stop it (`make down`, or the process `pgrep -a \
             dbconn-operator` shows) and run the bench again."
        );
        std::process::exit(2);
    }
}
