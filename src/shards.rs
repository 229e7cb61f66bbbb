//! Sharding: several replicas split the connections, each connection reconciled and probed by
//! exactly one. A connection belongs to shard `fnv1a(uid) % count`, and each shard is a
//! `coordination.k8s.io/v1` Lease. Every replica also holds a Lease of its own, so each knows
//! how many replicas are alive and takes its fair share of shards (count / replicas, rounded
//! up): free or expired ones, while it hands back what it holds beyond its share, so a new
//! replica gets some and a lost one's are taken over without a human.
//!
//! Expiry is judged as in `leader`: a record unchanged for a lease duration on our own clock.
//! A replica stops using a shard once it has not renewed it for the renew deadline (two thirds
//! of the duration), before anyone else may take it over: never two replicas on a connection.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions},
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{deadline, leader::LeaseConfig};

const NO_POST_OPTIONS: PostParams = PostParams {
    dry_run: false,
    field_manager: None,
};
const NO_DELETE_OPTIONS: DeleteParams = DeleteParams {
    dry_run: false,
    grace_period_seconds: None,
    propagation_policy: None,
    preconditions: None,
};

/// The label that groups one operator's Leases, and the one that tells shards from replicas.
const SET_LABEL: &str = "dbconn.dev/lease-set";
const ROLE_LABEL: &str = "dbconn.dev/lease-role";

/// The shard a connection belongs to: a hash of its uid that every replica, of every version,
/// computes alike (FNV-1a; std's hasher may change between Rust releases).
pub fn shard_of(uid: &str, count: u32) -> u32 {
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(count.max(1))) as u32
}

/// Which shards this replica holds now, as the controller reads it.
#[derive(Clone)]
pub struct Sharding {
    pub count: u32,
    held: watch::Receiver<BTreeSet<u32>>,
}

impl Sharding {
    pub fn owns(&self, uid: &str) -> bool {
        self.held.borrow().contains(&shard_of(uid, self.count))
    }

    /// Changes of the shards held, for the controller to act on.
    pub fn changes(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.held.clone()
    }
}

/// Starts claiming and renewing shards; [`ShardKeeper::stop`] ends it.
pub fn start(client: Client, config: LeaseConfig, count: u32) -> (Sharding, ShardKeeper) {
    let (publish, held) = watch::channel(BTreeSet::new());
    let keeper = Keeper {
        api: Api::namespaced(client, &config.namespace),
        config,
        count,
        observed: HashMap::new(),
        renewed: HashMap::new(),
        publish,
    };
    let task = tokio::spawn(keeper.run());
    (Sharding { count, held }, ShardKeeper { task })
}

/// The task that claims and renews shards.
pub struct ShardKeeper {
    task: tokio::task::JoinHandle<()>,
}

impl ShardKeeper {
    /// Stops renewing; [`release`] then hands the shards back.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Hands back, on shutdown, what `identity` holds in the set of `config`.
pub async fn release(client: Client, config: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let limit = config.duration / 3;
    let params = ListParams::default().labels(&format!("{SET_LABEL}={}", config.name));
    let Ok(leases) = deadline::within(limit, "listing the shard Leases", api.list(&params)).await
    else {
        warn!("cannot list the shard Leases; the other replicas take them over when they expire");
        return;
    };
    for mut lease in leases.items {
        if holder(&lease) != Some(config.identity.as_str()) {
            continue;
        }
        let name = lease.name_any();
        let outcome = if role(&lease) == Some("replica") {
            let delete = api.delete(&name, &NO_DELETE_OPTIONS);
            deadline::within(limit, "deleting the replica Lease", delete)
                .await
                .map(drop)
        } else {
            lease.spec = Some(LeaseSpec::default());
            let replace = api.replace(&name, &NO_POST_OPTIONS, &lease);
            deadline::within(limit, "releasing a shard Lease", replace)
                .await
                .map(drop)
        };
        match outcome {
            Ok(()) => info!(lease = %name, "released"),
            Err(error) => warn!(lease = %name, %error, "cannot release; it expires on its own"),
        }
    }
}

struct Keeper {
    api: Api<Lease>,
    config: LeaseConfig,
    count: u32,
    /// Each Lease's last record seen (holder, renewTime) and when it was first seen.
    observed: HashMap<String, (Option<String>, Option<MicroTime>, Instant)>,
    /// When each shard held was last renewed.
    renewed: HashMap<u32, Instant>,
    publish: watch::Sender<BTreeSet<u32>>,
}

impl Keeper {
    async fn run(mut self) {
        // The first round only announces this replica: replicas started together then see
        // each other before they claim, instead of the first taking every shard.
        let mut announce_only = true;
        loop {
            let every = self.config.duration / 7;
            // Every call of a round is bounded, and so is the round: a slow apiserver must
            // not keep a shard in use past its renew deadline.
            let round = tokio::time::timeout(every * 2, self.round(every, announce_only)).await;
            announce_only = false;
            match round {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "cannot read or write the shard Leases"),
                Err(_) => warn!("the shard Leases took too long to renew; retrying"),
            }
            self.publish_held();
            tokio::time::sleep(every).await;
        }
    }

    /// Shards renewed within the renew deadline: the ones this replica may use.
    fn publish_held(&mut self) {
        let deadline = self.config.renew_deadline();
        self.renewed.retain(|_, at| at.elapsed() < deadline);
        let held: BTreeSet<u32> = self.renewed.keys().copied().collect();
        self.publish.send_if_modified(|before| {
            if *before == held {
                return false;
            }
            info!(held = ?held, shards = self.count, "shards held changed");
            *before = held.clone();
            true
        });
    }

    async fn round(&mut self, limit: Duration, announce_only: bool) -> Result<(), kube::Error> {
        let params = ListParams::default().labels(&format!("{SET_LABEL}={}", self.config.name));
        let leases = deadline::within(limit, "listing the shard Leases", self.api.list(&params))
            .await?
            .items;
        let by_name: HashMap<String, Lease> =
            leases.into_iter().map(|l| (l.name_any(), l)).collect();
        // Every record is noted each round, whether or not it is looked at: a shard's expiry
        // counts from when its holder last renewed, not from when we first wanted it.
        self.observed.retain(|name, _| by_name.contains_key(name));
        for lease in by_name.values() {
            self.observe(lease);
        }
        let me = self.replica_name();
        self.write(&me, "replica", by_name.get(&me), limit).await?;
        if announce_only {
            return Ok(());
        }
        let alive = 1 + by_name
            .values()
            .filter(|l| role(l) == Some("replica") && l.name_any() != me)
            .filter(|l| !self.expired(l))
            .count();
        self.collect_departed(&by_name, limit).await;
        let share = self.count.div_ceil(alive as u32) as usize;

        let mut held = Vec::new();
        for shard in 0..self.count {
            let name = self.shard_name(shard);
            let lease = by_name.get(&name);
            if lease.and_then(holder) == Some(self.config.identity.as_str()) {
                held.push(shard);
            } else {
                self.renewed.remove(&shard);
            }
        }
        // Beyond the share, from the highest: another replica needs them.
        while held.len() > share {
            let shard = held.pop().expect("more than the share");
            self.renewed.remove(&shard);
            let name = self.shard_name(shard);
            if let Some(lease) = by_name.get(&name) {
                let mut lease = lease.clone();
                lease.spec = Some(LeaseSpec::default());
                let replace = self.api.replace(&name, &NO_POST_OPTIONS, &lease);
                deadline::within(limit, "handing back a shard Lease", replace).await?;
                info!(shard, share, replicas = alive, "handed a shard back");
            }
        }
        for &shard in &held {
            let name = self.shard_name(shard);
            if self
                .write(&name, "shard", by_name.get(&name), limit)
                .await?
            {
                self.renewed.insert(shard, Instant::now());
            }
        }
        for shard in 0..self.count {
            if held.len() >= share {
                break;
            }
            let name = self.shard_name(shard);
            let lease = by_name.get(&name);
            let free = lease.is_none_or(|l| holder(l).is_none() || self.expired(l));
            if held.contains(&shard) || !free {
                continue;
            }
            if self.write(&name, "shard", lease, limit).await? {
                info!(shard, share, replicas = alive, "claimed a shard");
                self.renewed.insert(shard, Instant::now());
                held.push(shard);
            }
        }
        Ok(())
    }

    /// Creates or renews Lease `name` for this replica; false when someone else wrote first.
    async fn write(
        &mut self,
        name: &str,
        role: &str,
        current: Option<&Lease>,
        limit: Duration,
    ) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            renew_time: Some(now.clone()),
            acquire_time: current
                .filter(|l| holder(l) == Some(self.config.identity.as_str()))
                .and_then(|l| l.spec.as_ref()?.acquire_time.clone())
                .or(Some(now)),
            ..Default::default()
        };
        let written = match current {
            Some(lease) => {
                let mut lease = lease.clone();
                lease.spec = Some(spec);
                // Its resourceVersion makes this fail with 409 if anyone wrote since the list.
                let replace = self.api.replace(name, &NO_POST_OPTIONS, &lease);
                deadline::within(limit, "renewing a Lease", replace).await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        labels: Some(
                            [
                                (SET_LABEL.to_owned(), self.config.name.clone()),
                                (ROLE_LABEL.to_owned(), role.to_owned()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                let create = self.api.create(&NO_POST_OPTIONS, &lease);
                deadline::within(limit, "creating a Lease", create).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Deletes the Leases of replicas gone for good (expired twice over), so the set does not
    /// grow with every Pod name a Deployment ever had.
    async fn collect_departed(&mut self, leases: &HashMap<String, Lease>, limit: Duration) {
        let gone = self.config.duration * 2;
        for lease in leases.values().filter(|l| role(l) == Some("replica")) {
            let name = lease.name_any();
            let stale = self
                .observed
                .get(&name)
                .is_some_and(|(_, _, seen)| seen.elapsed() >= gone);
            if !stale || holder(lease) == Some(self.config.identity.as_str()) {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: lease.resource_version(),
                    uid: None,
                }),
                ..Default::default()
            };
            let delete = self.api.delete(&name, &params);
            if deadline::within(limit, "deleting a departed replica's Lease", delete)
                .await
                .is_ok()
            {
                info!(lease = %name, "deleted the Lease of a departed replica");
                self.observed.remove(&name);
            }
        }
    }

    /// Notes the Lease's record (holder, renewTime), and when it was first seen as it is.
    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity, spec.renew_time);
        let name = lease.name_any();
        let unchanged = self
            .observed
            .get(&name)
            .is_some_and(|(holder, renew, _)| (holder, renew) == (&record.0, &record.1));
        if !unchanged {
            self.observed
                .insert(name, (record.0, record.1, Instant::now()));
        }
    }

    /// True when the Lease's record has not changed for its duration on our clock.
    fn expired(&self, lease: &Lease) -> bool {
        let Some((_, _, first_seen)) = self.observed.get(&lease.name_any()) else {
            return false;
        };
        let duration = lease
            .spec
            .as_ref()
            .and_then(|spec| spec.lease_duration_seconds)
            .map_or(self.config.duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        first_seen.elapsed() >= duration
    }

    fn shard_name(&self, shard: u32) -> String {
        format!("{}-shard-{shard}", self.config.name)
    }

    fn replica_name(&self) -> String {
        format!("{}-replica-{}", self.config.name, self.config.identity)
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

fn role(lease: &Lease) -> Option<&str> {
    lease.labels().get(ROLE_LABEL).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_keeps_its_shard_everywhere() {
        // Fixed values: a replica built by another Rust release must agree.
        assert_eq!(shard_of("", 7), (0xcbf2_9ce4_8422_2325_u64 % 7) as u32);
        assert_eq!(
            shard_of("a", 1000),
            (0xaf63_dc4c_8601_ec8c_u64 % 1000) as u32
        );
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "no shards means one");
    }

    #[test]
    fn uids_spread_evenly_over_the_shards() {
        let count = 6;
        let mut per_shard = vec![0; count as usize];
        for i in 0..6000 {
            let uid = format!("5f1c2a9e-0000-4000-8000-{i:012x}");
            per_shard[shard_of(&uid, count) as usize] += 1;
        }
        for n in per_shard {
            assert!((800..=1200).contains(&n), "{n} of 6000 in one of 6 shards");
        }
    }
}
