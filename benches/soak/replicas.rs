//! Two operator replicas sharing the connections by shard Leases; the soak kills and restarts
//! the second one, as a Deployment would after a crash.

use crate::common::{Operator, measure::Memory};

pub const SHARDS: u64 = 4;
const LEASE_DURATION: &str = "15s";

pub struct Replicas {
    ns: String,
    /// Never killed, so its memory over the hour is one process's.
    pub a: Operator,
    /// Killed by the replica fault and started again.
    pub b: Option<Operator>,
}

impl Replicas {
    pub fn start(ns: &str) -> Self {
        Self {
            ns: ns.to_owned(),
            a: replica(ns, "a"),
            b: Some(replica(ns, "b")),
        }
    }

    pub fn kill_b(&mut self) {
        if let Some(mut b) = self.b.take() {
            b.kill();
        }
    }

    pub fn start_b(&mut self) {
        self.b = Some(replica(&self.ns, "b"));
    }

    /// Shards each replica holds (b: 0 while it is down).
    pub async fn shards_held(&self) -> (u64, u64) {
        let b = match &self.b {
            Some(b) => held(b).await,
            None => 0,
        };
        (held(&self.a).await, b)
    }

    /// Each replica's resident memory in MiB (b: 0 while it is down).
    pub fn rss_mib(&self) -> (f64, f64) {
        let rss = |o: &Operator| Memory::of(o.pid()).read("VmRSS:") as f64 / 1024.0;
        (rss(&self.a), self.b.as_ref().map_or(0.0, rss))
    }

    /// Replica a's CPU time so far, in seconds.
    pub fn cpu_seconds_of_a(&self) -> f64 {
        Memory::of(self.a.pid()).cpu().as_secs_f64()
    }

    pub fn logs(&self) -> String {
        let b = self.b.as_ref().map(|b| b.log.display().to_string());
        format!("{} and {}", self.a.log.display(), b.unwrap_or_default())
    }
}

async fn held(operator: &Operator) -> u64 {
    // The HTTP server may not answer yet right after a start.
    match tokio::net::TcpStream::connect(("127.0.0.1", operator.http_port)).await {
        Ok(_) => operator.metric("dbconn_shards_held").await as u64,
        Err(_) => 0,
    }
}

fn replica(ns: &str, identity: &str) -> Operator {
    Operator::start_with(
        ns,
        &format!("-soak-{identity}"),
        &[
            "--shards",
            &SHARDS.to_string(),
            "--lease-name",
            "soak-shards",
            "--lease-namespace",
            ns,
            "--lease-duration",
            LEASE_DURATION,
            "--identity",
            identity,
        ],
    )
}
