//! What was true, what status said, and where they disagree.
//!
//! A watcher records every status change of every connection as it arrives. The faults record
//! what was true meanwhile: when a server was down, which Secret versions held a wrong password,
//! which generations of a spec pointed at no server. A `Ready=True` is false when
//! - its connection's Secret holds a wrong password on purpose (it must never be Ready);
//! - status says it observed a generation of the spec that points at no server
//!   (`status.observedGeneration`, which kstatus, Flux and Argo CD read beside Ready);
//! - it was computed with a Secret version that held a wrong password (`status.credentials`);
//! - it was written while the connection's server was down, with no failed probe admitted
//!   (`probe.consecutiveFailures` 0). A Ready connection stays Ready for up to
//!   `failureThreshold` failed probes on purpose, saying so in that count; writes within
//!   [`GRACE`] of the server going down may carry a probe made just before.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use dbconn_operator::{api::DatabaseConnection, conditions};
use futures::StreamExt;
use kube::{
    Api,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use tokio::task::JoinHandle;

use crate::fleet::{Fleet, Server};

/// How long after a server went down a write may still carry a probe made before.
pub const GRACE: Duration = Duration::from_secs(3);

/// One status as the watcher saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the watcher received it.
    pub at: SystemTime,
    pub name: String,
    pub uid: String,
    pub uri: String,
    /// `Ready`'s status and reason, and `status.observedGeneration`; `None` without a Ready
    /// condition.
    pub ready: Option<(String, String, i64)>,
    pub failures: u32,
    /// `status.credentials.secretResourceVersion`.
    pub secret_version: Option<String>,
    /// When status was last written, from managedFields (to the second), if it says.
    pub written: Option<SystemTime>,
}

impl Seen {
    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|(s, _, _)| s == "True")
    }

    fn of(obj: &DatabaseConnection) -> Option<Self> {
        let status = obj.status.as_ref()?;
        let ready = conditions::find(&status.conditions, conditions::READY).map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                status.observed_generation.unwrap_or_default(),
            )
        });
        let written = obj
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.subresource.as_deref() == Some("status"))
            .filter_map(|f| f.time.as_ref().map(|t| SystemTime::from(t.0)))
            .max();
        Some(Self {
            at: SystemTime::now(),
            name: obj.metadata.name.clone()?,
            uid: obj.metadata.uid.clone()?,
            uri: obj.spec.uri.clone(),
            ready,
            failures: status.probe.as_ref().map_or(0, |p| p.consecutive_failures),
            secret_version: status
                .credentials
                .as_ref()
                .map(|c| c.secret_resource_version.clone()),
            written,
        })
    }
}

/// Every status change seen, in arrival order.
#[derive(Clone, Default)]
pub struct Record(Arc<Mutex<Vec<Seen>>>);

impl Record {
    /// Watches the connections until the task is aborted; the watcher starts over by itself
    /// after an error (an apiserver restart) and a status seen again unchanged is not recorded.
    pub fn watch(api: Api<DatabaseConnection>) -> (Self, JoinHandle<()>) {
        let record = Self::default();
        let sink = record.clone();
        let task = tokio::spawn(async move {
            let mut last: HashMap<String, String> = HashMap::new();
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let (Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj))) = event else {
                    continue;
                };
                let (Some(uid), Some(status)) = (&obj.metadata.uid, &obj.status) else {
                    continue;
                };
                let text = serde_json::to_string(status).unwrap_or_default();
                if last.get(uid) == Some(&text) {
                    continue;
                }
                last.insert(uid.clone(), text);
                if let Some(seen) = Seen::of(&obj) {
                    sink.0.lock().unwrap().push(seen);
                }
            }
        });
        (record, task)
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// A server down: from `down` until `restarting` (when the soak began to start it again; from
/// then until it answers, either status may be right).
pub struct Outage {
    pub servers: Vec<Server>,
    pub down: SystemTime,
    pub restarting: SystemTime,
}

/// What was true, as the faults made it.
#[derive(Default)]
pub struct Truth {
    pub outages: Vec<Outage>,
    /// (Secret, resourceVersion) pairs that held a wrong password.
    pub wrong_secrets: BTreeSet<(String, String)>,
    /// (uid, generation) pairs whose spec points at no server.
    pub dead_generations: BTreeSet<(String, i64)>,
}

/// A `Ready=True` that was not so.
pub struct FalseReady {
    pub seen: Seen,
    pub why: String,
}

impl Truth {
    /// Every false `Ready=True` in the record.
    pub fn judge(&self, record: &[Seen], fleet: &Fleet) -> Vec<FalseReady> {
        record
            .iter()
            .filter(|seen| seen.is_ready())
            .filter_map(|seen| {
                self.why_false(seen, fleet).map(|why| FalseReady {
                    seen: seen.clone(),
                    why,
                })
            })
            .collect()
    }

    fn why_false(&self, seen: &Seen, fleet: &Fleet) -> Option<String> {
        let (_, _, generation) = seen.ready.as_ref()?;
        if fleet.members.contains_key(&seen.name) && !fleet.meant_ready(&seen.name) {
            return Some("its Secret holds a wrong password on purpose".into());
        }
        if self
            .dead_generations
            .contains(&(seen.uid.clone(), *generation))
        {
            return Some(format!(
                "computed for generation {generation}, whose URI reaches no server"
            ));
        }
        if let (Some(version), Some(&login)) = (&seen.secret_version, fleet.members.get(&seen.name))
        {
            let secret = fleet.logins[login].secret.clone();
            if self
                .wrong_secrets
                .contains(&(secret.clone(), version.clone()))
            {
                return Some(format!(
                    "computed with Secret {secret} at resourceVersion {version}, which held a wrong password"
                ));
            }
        }
        let server = fleet.server_of(&seen.uri)?;
        let written = seen.written.unwrap_or(seen.at);
        self.outages
            .iter()
            .filter(|o| o.servers.contains(&server))
            .find(|o| {
                // `written` is to the second, so it may be up to 1 s before the write.
                written >= o.down + GRACE
                    && written + Duration::from_secs(1) <= o.restarting
                    && seen.failures == 0
            })
            .map(|o| {
                format!(
                    "written {:.1} s into the {} outage with no failed probe",
                    since(o.down, written).as_secs_f64(),
                    server.name()
                )
            })
    }
}

/// For each of `names`, the time from `from` to the first status seen after it that is not
/// Ready; `None` for those never seen so before `until`.
pub fn detections(
    record: &[Seen],
    names: &[String],
    from: SystemTime,
    until: SystemTime,
) -> Vec<Option<Duration>> {
    names
        .iter()
        .map(|name| {
            record
                .iter()
                .filter(|s| &s.name == name && s.at >= from && s.at < until && !s.is_ready())
                .map(|s| since(from, s.at))
                .min()
        })
        .collect()
}

pub fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}
