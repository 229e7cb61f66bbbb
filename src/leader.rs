//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas can run and only one
//! reconciles. Uses get/create/update with resourceVersion preconditions only.
//!
//! Expiry is judged on the local clock, as client-go does: a lease held by another replica
//! counts as expired when its record has not changed for `lease_duration` since we first saw it,
//! so clock skew between nodes does not matter.
//!
//! No split brain: the leader gives up once it has not renewed for `renew_deadline` (two
//! thirds of the duration: 10 s of 15 s, as client-go), and every Lease call is bounded so a
//! hung apiserver cannot hold it past that. A standby takes over only after the record stood
//! still for the full duration on its own clock, by which time the old leader has stopped.
//!
//! Why not the kube-lease-manager crate (0.13, on kube 5): it judges expiry from the holder's
//! `renewTime` against the local wall clock, which clock skew between nodes shifts, and its
//! Lease calls carry no deadline of their own; both are what this module exists to get right.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::deadline;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease stays valid without renewal; the standby takes over after this.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Time between attempts (to acquire, or to renew): 2 s of client-go's 15 s.
    fn retry_every(&self) -> Duration {
        self.duration / 7
    }

    /// The leader stops once it has not renewed for this long: well before a standby may
    /// take over (`duration` after the last renewal it saw).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last lease record seen and when (local clock) it was first seen.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    HeldByOther(String),
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&mut self) {
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew(self.config.retry_every()).await {
                Ok(Attempt::Leading) => {
                    info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(Attempt::HeldByOther(holder)) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(lease = %self.config.name, %holder, "standing by; another replica leads");
                        last_holder = Some(holder);
                    }
                }
                Err(error) => warn!(%error, "cannot read or write the leader lease; retrying"),
            }
            tokio::time::sleep(self.config.retry_every()).await;
        }
    }

    /// Renews the lease until it is lost; then sends `true` on the returned channel.
    /// Leadership counts as lost when another replica holds it, or when no renewal has
    /// succeeded within the renew deadline (a standby may take over soon after).
    pub fn keep_renewing(mut self) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (lost_tx, lost_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut last_renewal = Instant::now();
            let deadline = self.config.renew_deadline();
            loop {
                tokio::time::sleep(self.config.retry_every()).await;
                if lost_tx.is_closed() {
                    return;
                }
                // No call may outlive the deadline: a hung apiserver must not keep us leading.
                let left = deadline.saturating_sub(last_renewal.elapsed());
                match self.try_acquire_or_renew(left).await {
                    Ok(Attempt::Leading) => last_renewal = Instant::now(),
                    Ok(Attempt::HeldByOther(holder)) => {
                        warn!(%holder, "leadership lost to another replica");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(error) => warn!(%error, "cannot renew the leader lease"),
                }
                if last_renewal.elapsed() >= deadline {
                    warn!(
                        deadline = %crate::duration::human(deadline),
                        "no lease renewal within the renew deadline; stepping down"
                    );
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        });
        (lost_rx, task)
    }

    /// Gives the lease up so a standby can take over at once (on graceful shutdown).
    pub async fn release(client: Client, config: &LeaseConfig) {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let limit = config.retry_every();
        let Ok(Some(mut lease)) =
            deadline::within(limit, "reading the Lease", api.get_opt(&config.name)).await
        else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&config.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        let params = PostParams::default();
        let release = api.replace(&config.name, &params, &lease);
        match deadline::within(limit, "releasing the Lease", release).await {
            Ok(_) => info!(lease = %config.name, "leader lease released"),
            Err(error) => {
                warn!(%error, "cannot release the leader lease; the standby takes over when it expires")
            }
        }
    }

    /// One attempt; each of its calls must answer within `limit`.
    async fn try_acquire_or_renew(&mut self, limit: Duration) -> Result<Attempt, kube::Error> {
        let limit = limit.max(Duration::from_millis(100));
        let now = MicroTime(Timestamp::now());
        let read = self.api.get_opt(&self.config.name);
        let Some(mut lease) = deadline::within(limit, "reading the Lease", read).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec_for_me(now, None)),
            };
            let params = PostParams::default();
            let create = self.api.create(&params, &lease);
            return match deadline::within(limit, "creating the Lease", create).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    Ok(Attempt::HeldByOther("(just created)".into()))
                }
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        if !mine && let Some(other) = holder.clone() {
            if !self.expired(&spec) {
                return Ok(Attempt::HeldByOther(other));
            }
            info!(previous = %other, "leader lease expired; taking over");
        }
        let acquired = if mine {
            spec.acquire_time.clone()
        } else {
            None
        };
        let mut next = self.spec_for_me(now, acquired);
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine));
        lease.spec = Some(next);
        // The resourceVersion in `lease` makes this fail with 409 if anyone wrote in between.
        let params = PostParams::default();
        let write = self.api.replace(&self.config.name, &params, &lease);
        match deadline::within(limit, "renewing the Lease", write).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Attempt::HeldByOther("(concurrent update)".into()))
            }
            Err(error) => Err(error),
        }
    }

    /// True when the other holder's record has not changed for a lease duration on our clock.
    fn expired(&mut self, spec: &LeaseSpec) -> bool {
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let first_seen = match &self.observed {
            Some((holder, renew, seen)) if (holder, renew) == (&record.0, &record.1) => *seen,
            _ => {
                let now = Instant::now();
                self.observed = Some((record.0, record.1, now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        first_seen.elapsed() >= duration
    }

    fn spec_for_me(&self, now: MicroTime, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_steps_down_well_before_a_standby_may_take_over() {
        let config = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration: Duration::from_secs(15),
        };
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
        assert!(
            config.retry_every() * 4 < config.renew_deadline(),
            "several tries before it"
        );
    }
}
