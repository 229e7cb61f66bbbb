//! Step 6: status and Events. Status is computed by `crate::status` and sent by
//! `crate::status_write` only when it changed; Events mark transitions only.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::runtime::events::{Event, EventType};
use tracing::{debug, info, warn};

use super::{Error, Reconciliation};
use crate::{
    api::DatabaseConnectionStatus,
    conditions::{self, BINDING_READY, REACHABLE, READY, TLS_VERIFIED},
    deadline,
    status::{self, Facts, Outcome},
    status_write::{self, ApiStatus, Written},
};

impl Reconciliation<'_> {
    /// Reports a success; the latency is written only when it moved materially or when
    /// status is being written anyway.
    pub(super) async fn report_with_latency(
        &mut self,
        outcome: &Outcome<'_>,
        facts: Facts,
        latency: Duration,
        cold: bool,
    ) -> Result<(), Error> {
        let previous = self.obj.status.clone().unwrap_or_default();
        let without_latency = status::desired(
            &previous,
            outcome,
            &facts,
            self.obj.metadata.generation,
            Timestamp::now(),
        );
        let typical = if cold {
            self.state.latency.observe_cold(latency)
        } else {
            self.state.latency.observe(latency)
        };
        let shown = previous.probe.as_ref().and_then(|p| p.latency.as_deref());
        self.state.latency.shown(shown);
        if without_latency == previous && !self.state.latency.worth_recording(typical) {
            return Ok(());
        }
        self.report(
            outcome,
            Facts {
                latency: Some(typical),
                ..facts
            },
        )
        .await?;
        // Status shows this figure now: what the next probes (a prober's too) compare with.
        let written = crate::duration::human(typical);
        self.state.latency.shown(Some(&written));
        Ok(())
    }

    /// Writes status if it changed (see `status_write`), and emits Events for transitions.
    pub(super) async fn report(&self, outcome: &Outcome<'_>, facts: Facts) -> Result<(), Error> {
        let desired = |previous: &DatabaseConnectionStatus| {
            status::desired(
                previous,
                outcome,
                &facts,
                self.obj.metadata.generation,
                Timestamp::now(),
            )
        };
        let store = ApiStatus {
            client: &self.ctx.client,
            namespace: self.obj.metadata.namespace.as_deref().unwrap_or_default(),
            name: self.obj.metadata.name.as_deref().unwrap_or_default(),
        };
        let announcing = match status_write::write(&store, self.obj, desired).await {
            Ok(Some(written)) => {
                self.ctx.metrics.status_written();
                debug!(changed = ?changed_fields(&written.previous, &written.next), "status written");
                // Boxed with the two statuses it reads, as rare as the write; built within this
                // arm so that the reconcile's future keeps no room for them either.
                Box::pin(self.announce(written))
            }
            Ok(None) => return Ok(()),
            // Deleted while this reconcile ran: nothing left to report on.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(Error::StatusWrite(error)),
        };
        announcing.await;
        Ok(())
    }

    /// Events on transitions only: `Ready` or `BindingReady` changing, and certificate checks
    /// turned off.
    async fn announce(&self, Written { previous, next }: Written) {
        let mut events = Vec::new();
        for type_ in [READY, BINDING_READY] {
            let before = conditions::find(&previous.conditions, type_);
            let Some(after) = conditions::find(&next.conditions, type_) else {
                continue;
            };
            if before.is_some_and(|b| b.status == after.status && b.reason == after.reason) {
                continue;
            }
            let (kind, action) = if type_ == READY {
                ("Ready", "Probe")
            } else {
                ("BindingReady", "WriteBinding")
            };
            info!(condition = kind, status = %after.status, reason = %after.reason, message = %after.message, "condition changed");
            let type_ = if after.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            events.push(Event {
                type_,
                reason: after.reason.clone(),
                note: Some(after.message.clone()),
                action: action.into(),
                secondary: None,
            });
        }
        // A suspended connection has no Ready to change: say so once, when probing stops.
        if let Some(now) = suspended(&next)
            && suspended(&previous).is_none()
        {
            events.push(Event {
                type_: EventType::Normal,
                reason: "Suspended".into(),
                note: Some(now.message.clone()),
                action: "Suspend".into(),
                secondary: None,
            });
        }
        // A failover followed: sessions moved from one listed host to another.
        let serving = |status: &DatabaseConnectionStatus| {
            status
                .members
                .iter()
                .find(|m| m.serving)
                .map(|m| (m.address.clone(), m.role.clone()))
        };
        if let Some((after, role)) = serving(&next)
            && !previous.members.is_empty()
            && serving(&previous).is_none_or(|(before, _)| before != after)
        {
            let before = serving(&previous)
                .map_or("no listed host took them".into(), |(before, _)| {
                    format!("they went to {before}")
                });
            info!(%after, %before, "sessions moved to another listed host");
            events.push(Event {
                type_: EventType::Normal,
                reason: "ServingMemberChanged".into(),
                note: Some(format!(
                    "Sessions now go to {after} ({role}); before, {before}."
                )),
                action: "Probe".into(),
                secondary: None,
            });
        }
        // Once, when it starts (or starts again): `kubectl get events` and alerting on Warning
        // Events should show an unauthenticated server, not only the condition.
        if let Some(tls) = conditions::find(&next.conditions, TLS_VERIFIED)
            && tls.status == "False"
            && conditions::find(&previous.conditions, TLS_VERIFIED).is_none()
        {
            events.push(Event {
                type_: EventType::Warning,
                reason: "InsecureTLS".into(),
                note: Some(tls.message.clone()),
                action: "Probe".into(),
                secondary: None,
            });
        }
        for event in events {
            self.publish(event).await;
        }
    }

    /// Publishes one Event on this connection; a failure is logged, never retried.
    pub(super) async fn publish(&self, event: Event) {
        let reference = self.reference();
        // Boxed: Events are rare, and the reconcile's future should not keep room for one.
        let sent = Box::pin(deadline::api(
            "publishing an Event",
            self.ctx.recorder.publish(&event, &reference),
        ))
        .await;
        if let Err(error) = sent {
            warn!(%error, reason = %event.reason, "cannot publish event");
        }
    }
}

/// The `Reachable` condition of a suspended connection, if it is one.
fn suspended(status: &DatabaseConnectionStatus) -> Option<&Condition> {
    conditions::find(&status.conditions, REACHABLE).filter(|c| c.reason == "Suspended")
}

/// Which parts of status a write changed, for the debug log.
fn changed_fields(
    previous: &DatabaseConnectionStatus,
    next: &DatabaseConnectionStatus,
) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("conditions", previous.conditions != next.conditions);
    check(
        "observedGeneration",
        previous.observed_generation != next.observed_generation,
    );
    check("server", previous.server != next.server);
    check("probe", previous.probe != next.probe);
    check("credentials", previous.credentials != next.credentials);
    check("schema", previous.schema != next.schema);
    check("binding", previous.binding != next.binding);
    check("members", previous.members != next.members);
    changed
}
