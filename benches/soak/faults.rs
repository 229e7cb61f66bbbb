//! The faults, each as users meet it, and the wait after each until status matches the truth.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use kube::api::ListParams;

use crate::{
    common::{fault::Outage, free_port},
    fleet::{Fleet, Server, new_password},
    replicas::{Replicas, SHARDS},
    truth::{self, Record, Truth},
};

/// How long a server stays down, and when during that the soak checks that its connections
/// are no longer Ready: a healthy probe interval (10 s), then `failureThreshold` (3) failures,
/// each within the 5 s probe timeout plus the 1 s and 2 s backoff between them, and slack.
const OUTAGE: Duration = Duration::from_secs(45);
const STALE_CHECK: Duration = Duration::from_secs(40);
/// How long the apiserver stays down, and the second replica.
const APISERVER_DOWN: Duration = Duration::from_secs(15);
/// The limit for status to match the truth again after a fault.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);
const SETTLE_POLL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Neo4jKilled,
    PostgresCrashed,
    ApiserverRestarted,
    ReplicaKilled,
    SecretRotated,
    WrongPassword,
    Retargeted,
    Edited,
    Recreated,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Neo4jKilled,
        Fault::PostgresCrashed,
        Fault::ApiserverRestarted,
        Fault::ReplicaKilled,
        Fault::SecretRotated,
        Fault::WrongPassword,
        Fault::Retargeted,
        Fault::Edited,
        Fault::Recreated,
    ];

    /// Its name for `--only`.
    pub fn short(self) -> &'static str {
        match self {
            Fault::Neo4jKilled => "neo4j",
            Fault::PostgresCrashed => "postgres",
            Fault::ApiserverRestarted => "apiserver",
            Fault::ReplicaKilled => "replica",
            Fault::SecretRotated => "rotation",
            Fault::WrongPassword => "wrong-password",
            Fault::Retargeted => "retarget",
            Fault::Edited => "edit",
            Fault::Recreated => "recreate",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Neo4jKilled => "Neo4j killed (SIGKILL), started 45 s later",
            Fault::PostgresCrashed => "PostgreSQL crashed (immediate shutdown), started 45 s later",
            Fault::ApiserverRestarted => "apiserver stopped, started 15 s later",
            Fault::ReplicaKilled => "replica b killed (SIGKILL), started once a took over",
            Fault::SecretRotated => "password rotated: server, then Secret",
            Fault::WrongPassword => "Secret given a wrong password, put right 45 s later",
            Fault::Retargeted => "connections pointed at a port with no server, back 45 s later",
            Fault::Edited => "connections edited: another Secret and interval",
            Fault::Recreated => "connections deleted and created again, same names",
        }
    }
}

/// One fault's line in the table.
pub struct Row {
    pub at: Duration,
    pub fault: Fault,
    pub found: Finding,
    /// Logins the operator attempted (connections through the proxies) during the fault.
    pub connects: u64,
    pub rss_mib: (f64, f64),
}

/// What one fault found.
pub struct Finding {
    pub what: String,
    pub affected: usize,
    /// How long until status said not Ready, where the fault should have made it so.
    pub detected: Option<String>,
    /// Connections still Ready [`STALE_CHECK`] into a fault that should have ended that.
    pub still_ready: Option<usize>,
    /// From the fault's end until status matched the truth, or what still did not.
    pub settled: Result<Duration, String>,
}

impl Finding {
    /// A fault that should turn no connection not Ready.
    fn quiet(what: String, affected: usize, settled: Result<Duration, String>) -> Self {
        Self {
            what,
            affected,
            detected: None,
            still_ready: None,
            settled,
        }
    }
}

pub struct Soak {
    pub fleet: Fleet,
    pub truth: Truth,
    pub record: Record,
    pub replicas: Replicas,
    pub started: Instant,
    rotations: usize,
    /// The connections the edit fault moved to another login, with the login they came from.
    moved: BTreeMap<String, usize>,
    recreations: usize,
}

impl Soak {
    pub fn new(fleet: Fleet, record: Record, replicas: Replicas) -> Self {
        Self {
            fleet,
            truth: Truth::default(),
            record,
            replicas,
            started: Instant::now(),
            rotations: 0,
            moved: BTreeMap::new(),
            recreations: 0,
        }
    }

    pub async fn run(&mut self, fault: Fault) -> Row {
        let at = self.started.elapsed();
        let connects = self.fleet.connects();
        let found = match fault {
            Fault::Neo4jKilled => self.outage("neo4j", &[Server::Neo4j]).await,
            Fault::PostgresCrashed => {
                self.outage("postgres", &[Server::Postgres, Server::PgBouncer])
                    .await
            }
            Fault::ApiserverRestarted => self.apiserver_restart().await,
            Fault::ReplicaKilled => self.replica_killed().await,
            Fault::SecretRotated => self.rotation().await,
            Fault::WrongPassword => self.wrong_password().await,
            Fault::Retargeted => self.retarget().await,
            Fault::Edited => self.edit().await,
            Fault::Recreated => self.recreate().await,
        };
        Row {
            at,
            fault,
            found,
            connects: self.fleet.connects() - connects,
            rss_mib: self.replicas.rss_mib(),
        }
    }

    /// Waits out a fault's [`OUTAGE`]; returns how many of `names` were still Ready
    /// [`STALE_CHECK`] into it.
    async fn hold(&self, names: &[String]) -> usize {
        tokio::time::sleep(STALE_CHECK).await;
        let still_ready = self.count_ready(names).await;
        tokio::time::sleep(OUTAGE - STALE_CHECK).await;
        still_ready
    }

    /// A server down for [`OUTAGE`]: `service` is its name in testenv.sh.
    async fn outage(&mut self, service: &'static str, servers: &[Server]) -> Finding {
        let names = self.fleet.on(servers);
        let down = SystemTime::now();
        let outage = blocking(|| Outage::kill(service));
        let still_ready = self.hold(&names).await;
        let restarting = SystemTime::now();
        blocking(|| outage.end());
        self.truth.outages.push(truth::Outage {
            servers: servers.to_vec(),
            down,
            restarting,
        });
        let detected = self.detected(&names, down, restarting);
        let settled = self.settle().await;
        Finding {
            what: format!("{} back after {:.1} s", service, since(down).as_secs_f64()),
            affected: names.len(),
            detected: Some(detected),
            still_ready: Some(still_ready),
            settled,
        }
    }

    async fn apiserver_restart(&mut self) -> Finding {
        let outage = blocking(|| Outage::stop("apiserver"));
        tokio::time::sleep(APISERVER_DOWN).await;
        // A replica that cannot renew its shard Leases stops using those shards (another may
        // take them over once they expire), closing their pools.
        let held = self.replicas.shards_held().await;
        blocking(|| outage.end());
        Finding::quiet(
            format!("shards held by a, b as it came back: {held:?}"),
            0,
            self.settle().await,
        )
    }

    async fn replica_killed(&mut self) -> Finding {
        let (_, held_by_b) = self.replicas.shards_held().await;
        let killed = Instant::now();
        self.replicas.kill_b();
        let takeover = loop {
            if self.replicas.shards_held().await.0 == SHARDS {
                let after = killed.elapsed().as_secs_f64();
                break format!("a held all {SHARDS} shards after {after:.1} s");
            }
            if killed.elapsed() > SETTLE_LIMIT {
                break format!("a did not take all {SHARDS} shards in {SETTLE_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        self.replicas.start_b();
        Finding::quiet(
            format!("b held {held_by_b}; {takeover}; b started again"),
            0,
            self.settle().await,
        )
    }

    /// The next login whose password the soak may change, among those some connection uses.
    fn next_rotatable(&mut self) -> usize {
        let rotatable: Vec<usize> = (0..self.fleet.logins.len())
            .filter(|&i| self.fleet.logins[i].rotatable && !self.fleet.of_login(i).is_empty())
            .collect();
        self.rotations += 1;
        rotatable[self.rotations % rotatable.len()]
    }

    async fn rotation(&mut self) -> Finding {
        let login = self.next_rotatable();
        let password = new_password();
        self.fleet.set_server_password(login, &password).await;
        self.fleet.write_secret(login, &password).await;
        Finding::quiet(
            format!("Secret {}", self.fleet.logins[login].secret),
            self.fleet.of_login(login).len(),
            self.settle().await,
        )
    }

    async fn wrong_password(&mut self) -> Finding {
        let login = self.next_rotatable();
        let names = self.fleet.of_login(login);
        let secret = self.fleet.logins[login].secret.clone();
        let from = SystemTime::now();
        let version = self.fleet.write_secret(login, &new_password()).await;
        self.truth.wrong_secrets.insert((secret.clone(), version));
        let still_ready = self.hold(&names).await;
        let right = self.fleet.logins[login].password.clone();
        let until = SystemTime::now();
        self.fleet.write_secret(login, &right).await;
        Finding {
            what: format!("Secret {secret}"),
            affected: names.len(),
            detected: Some(self.detected(&names, from, until)),
            still_ready: Some(still_ready),
            settled: self.settle().await,
        }
    }

    /// Every 50th connection meant to be Ready is pointed at a port where nothing listens.
    async fn retarget(&mut self) -> Finding {
        let names: Vec<String> = self
            .fleet
            .on(&Server::ALL)
            .into_iter()
            .step_by(50)
            .collect();
        let dead = free_port();
        let from = SystemTime::now();
        for name in &names {
            let server = self.fleet.logins[self.fleet.members[name]].server;
            let uri = self.fleet.uri_on(server, dead);
            let (uid, generation) = self.fleet.put_spec(name, Some(&uri)).await;
            self.truth.dead_generations.insert((uid, generation));
        }
        let still_ready = self.hold(&names).await;
        let until = SystemTime::now();
        for name in &names {
            self.fleet.put_spec(name, None).await;
        }
        Finding {
            what: format!("to port {dead}"),
            affected: names.len(),
            detected: Some(self.detected(&names, from, until)),
            still_ready: Some(still_ready),
            settled: self.settle().await,
        }
    }

    /// Moves the connections of the third Neo4j login to the fourth's Secret with another
    /// interval (as kustomize's secretGenerator renames a Secret), or back.
    async fn edit(&mut self) -> Finding {
        let what;
        let names: Vec<String>;
        if self.moved.is_empty() {
            let (from, to) = (2, 3);
            names = self.fleet.of_login(from);
            for name in &names {
                self.fleet.members.insert(name.clone(), to);
                self.fleet.edited.insert(name.clone());
                self.moved.insert(name.clone(), from);
            }
            what = format!(
                "Secret {} -> {}, interval {} -> {}",
                self.fleet.logins[from].secret,
                self.fleet.logins[to].secret,
                crate::fleet::INTERVAL,
                crate::fleet::OTHER_INTERVAL
            );
        } else {
            names = self.moved.keys().cloned().collect();
            for (name, from) in std::mem::take(&mut self.moved) {
                self.fleet.members.insert(name.clone(), from);
                self.fleet.edited.remove(&name);
            }
            what = "back".into();
        }
        for name in &names {
            self.fleet.put_spec(name, None).await;
        }
        Finding::quiet(what, names.len(), self.settle().await)
    }

    /// Every 20th connection (a different set each time) is deleted; half are created again
    /// at once, half 5 s later.
    async fn recreate(&mut self) -> Finding {
        self.recreations += 1;
        let names: Vec<String> = self
            .fleet
            .members
            .keys()
            .skip(self.recreations % 20)
            .step_by(20)
            .cloned()
            .collect();
        self.fleet.delete_connections(&names).await;
        let (now, later) = names.split_at(names.len() / 2);
        self.fleet.create_connections(now).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.fleet.create_connections(later).await;
        Finding::quiet("new uids".into(), names.len(), self.settle().await)
    }

    /// How many of `names` are Ready now.
    async fn count_ready(&self, names: &[String]) -> usize {
        let list = match self.fleet.api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(e) => panic!("list connections: {e}"),
        };
        list.items
            .iter()
            .filter(|c| names.contains(c.metadata.name.as_ref().unwrap()))
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    dbconn_operator::conditions::is_true(
                        &s.conditions,
                        dbconn_operator::conditions::READY,
                    )
                })
            })
            .count()
    }

    /// "max X s (n of N)": how soon status of `names` said not Ready after `from`.
    fn detected(&self, names: &[String], from: SystemTime, until: SystemTime) -> String {
        let times = truth::detections(&self.record.all(), names, from, until);
        let seen: Vec<Duration> = times.iter().flatten().copied().collect();
        let max = seen.iter().max().copied().unwrap_or_default();
        format!(
            "≤ {:.1} s ({} of {})",
            max.as_secs_f64(),
            seen.len(),
            names.len()
        )
    }

    /// Waits until status matches what the fleet means (see [`Soak::unmet`]).
    pub async fn settle(&self) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let unmet = self.unmet().await;
            if unmet.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > SETTLE_LIMIT {
                return Err(unmet.join("; "));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// What differs from the truth now: connections missing, not Ready though meant to be (by
    /// reason), Ready though meant not to be, status of an older generation or Secret version;
    /// replicas not holding their share of the shards.
    async fn unmet(&self) -> Vec<String> {
        let all = ListParams::default();
        let (connections, secrets) =
            match tokio::try_join!(self.fleet.api.list(&all), self.fleet.secrets.list(&all)) {
                Ok(lists) => lists,
                Err(e) => return vec![format!("the apiserver: {e}")],
            };
        let version: BTreeMap<String, String> = secrets
            .items
            .into_iter()
            .filter_map(|s| Some((s.metadata.name?, s.metadata.resource_version?)))
            .collect();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut present = 0;
        for c in &connections.items {
            let name = c.metadata.name.clone().unwrap_or_default();
            let Some(&login) = self.fleet.members.get(&name) else {
                continue;
            };
            present += 1;
            let status = c.status.clone().unwrap_or_default();
            let ready = dbconn_operator::conditions::find(
                &status.conditions,
                dbconn_operator::conditions::READY,
            );
            let problem = if status.observed_generation != c.metadata.generation {
                Some("status of an older generation".to_owned())
            } else if !self.fleet.meant_ready(&name) {
                ready
                    .filter(|r| r.status == "True")
                    .map(|_| "Ready with a wrong password".to_owned())
            } else if let Some(r) = ready.filter(|r| r.status != "True") {
                Some(format!("not Ready ({})", r.reason))
            } else if ready.is_none() {
                Some("no Ready condition".to_owned())
            } else {
                let secret = &self.fleet.logins[login].secret;
                let used = status.credentials.map(|c| c.secret_resource_version);
                (used.as_ref() != version.get(secret))
                    .then(|| "Ready on an older Secret version".to_owned())
            };
            if let Some(problem) = problem {
                *counts.entry(problem).or_default() += 1;
            }
        }
        let mut unmet: Vec<String> = counts
            .into_iter()
            .map(|(problem, n)| format!("{n} {problem}"))
            .collect();
        if present < self.fleet.members.len() {
            unmet.push(format!(
                "{} connections missing",
                self.fleet.members.len() - present
            ));
        }
        let held = self.replicas.shards_held().await;
        if held != (SHARDS / 2, SHARDS / 2) {
            unmet.push(format!("shards held by a, b: {held:?}"));
        }
        unmet
    }
}

/// Runs a blocking call (testenv.sh, seconds long) without stalling the runtime's other tasks:
/// the proxies and the watcher.
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(call)
}

fn since(from: SystemTime) -> Duration {
    truth::since(from, SystemTime::now())
}
