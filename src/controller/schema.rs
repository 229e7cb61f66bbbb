//! Step 4: the declared schema (Neo4j constraints and indexes, PostgreSQL extensions), applied
//! through the pool the probe just proved, and announced as Events.

use std::collections::BTreeSet;

use kube::{
    ResourceExt,
    runtime::events::{Event, EventType},
};
use tracing::info;

use super::Reconciliation;
use crate::{
    api::{DatabaseConnection, ServerInfo},
    conditions::{self, Desired},
    schema,
    schema_apply::{self, SchemaReport},
    settings::ConnectionSettings,
};

impl Reconciliation<'_> {
    /// Runs a schema pass when the manifest declares a schema (or the operator still owns items
    /// from an earlier one), keeps its result for status, and announces what it changed.
    /// Returns `None` when no pass ran, else whether to look again soon (an index still
    /// populating).
    pub(super) async fn sync_schema(
        &mut self,
        server: &ServerInfo,
        settings: &ConnectionSettings,
    ) -> Option<bool> {
        // Boxed: only connections that declare a schema pay for its room.
        let report = Box::pin(self.schema_pass(server, settings)).await?;
        self.announce_schema(&report).await;
        let check_soon = report.check_soon;
        self.state.schema = Some((report.status, report.condition));
        Some(check_soon)
    }

    async fn schema_pass(
        &self,
        server: &ServerInfo,
        settings: &ConnectionSettings,
    ) -> Option<SchemaReport> {
        let previous = self.obj.status.as_ref().and_then(|s| s.schema.as_ref());
        // What this connection claimed: from its last pass, else from status (after a restart).
        let previous = self
            .state
            .schema
            .as_ref()
            .map(|(status, _)| status)
            .or(previous);
        let declared = self.obj.spec.schema.as_ref();
        if declared.is_none() && previous.is_none_or(|p| p.managed.is_empty()) {
            return None;
        }
        let spec = declared.cloned().unwrap_or_default();
        let pool = &self.state.pool.as_ref()?.pool;
        if let Some(ops) = pool.extensions() {
            return Some(schema_apply::reconcile_extensions(ops, &spec.extensions, previous).await);
        }
        let Some(ops) = pool.schema() else {
            let condition = Desired::new(
                conditions::SCHEMA_READY,
                conditions::Status::False,
                "SchemaNotSupported",
                format!(
                    "engine {} has no declarative schema; remove spec.schema",
                    self.obj.spec.engine.as_str()
                ),
            );
            return Some(SchemaReport::unsupported(condition));
        };
        let undeclared_owned = previous.is_some_and(|p| {
            let declared = schema::declared(&spec).unwrap_or_default();
            p.managed
                .iter()
                .any(|m| !declared.iter().any(|d| &d.name == m))
        });
        let elsewhere = if spec.prune && undeclared_owned {
            self.declared_elsewhere(settings)
        } else {
            BTreeSet::new()
        };
        Some(schema_apply::reconcile(ops, &spec, previous, server, &elsewhere).await)
    }

    /// Names of the constraints and indexes that other DatabaseConnections on the same server
    /// and database declare. A connection that names no database counts as the same one: when
    /// in doubt, nothing is dropped.
    fn declared_elsewhere(&self, settings: &ConnectionSettings) -> BTreeSet<String> {
        let ours = self.obj.uid();
        let same_database = |other: &DatabaseConnection| {
            let Ok(theirs) = ConnectionSettings::from_spec(&other.spec) else {
                return false;
            };
            theirs.endpoint == settings.endpoint
                && (theirs.database.is_none()
                    || settings.database.is_none()
                    || theirs.database == settings.database)
        };
        self.ctx
            .connections
            .state()
            .iter()
            .filter(|other| other.uid() != ours && other.spec.engine == self.obj.spec.engine)
            .filter(|other| same_database(other))
            .filter_map(|other| other.spec.schema.as_ref())
            .flat_map(|s| schema::declared(s).unwrap_or_default())
            .map(|item| item.name)
            .collect()
    }

    /// Counts schema changes and announces creations, repairs and drops as Events.
    async fn announce_schema(&self, report: &SchemaReport) {
        if let Some(labels) = &self.state.labels {
            self.ctx
                .metrics
                .schema_problems(labels, report.status.problems.len());
            self.ctx
                .metrics
                .schema_changed(labels, report.changes.len());
        }
        if !report.changes.is_empty() {
            info!(changes = ?report.changes, "schema changed");
        }
        let mut events = Vec::new();
        if !report.repaired.is_empty() {
            events.push((
                EventType::Warning,
                "SchemaDrift",
                format!(
                    "{} went missing on the server and was created again.",
                    report.repaired.join(", ")
                ),
            ));
        }
        if !report.pruned.is_empty() {
            events.push((
                EventType::Normal,
                "SchemaPruned",
                format!(
                    "Dropped {}: created by this connection, no longer declared, and spec.schema.prune is on.",
                    report.pruned.join(", ")
                ),
            ));
        }
        if !report.changes.is_empty() {
            events.push((
                EventType::Normal,
                "SchemaApplied",
                report.changes.join("; "),
            ));
        }
        for (type_, reason, note) in events {
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: "ApplySchema".into(),
                secondary: None,
            };
            self.publish(event).await;
        }
    }
}
