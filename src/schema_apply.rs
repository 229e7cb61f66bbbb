//! Brings the server's constraints and indexes in line with `spec.schema`: reads what exists,
//! creates what is missing, drops what the operator owns and no longer declares (only with
//! `prune`), and reports the rest. One failing item never stops the others.

use std::collections::BTreeSet;

use crate::{
    api::{SchemaProblem, SchemaSpec, SchemaStatus, ServerInfo},
    conditions::{Desired, SCHEMA_READY, Status},
    engine::{EngineError, ExtensionOps, SchemaOps},
    schema::{self, Plan},
};

/// The result of one pass.
#[derive(Debug)]
pub struct SchemaReport {
    pub status: SchemaStatus,
    pub condition: Desired,
    /// Statements that changed the server, in words, for an Event.
    pub changes: Vec<String>,
    /// Owned items that had gone missing on the server and were created again.
    pub repaired: Vec<String>,
    /// Owned items dropped because they are no longer declared and `prune` is on.
    pub pruned: Vec<String>,
    /// Something is still in progress (an index populating): check again soon.
    pub check_soon: bool,
}

impl SchemaReport {
    /// For engines without declarative schema.
    pub fn unsupported(condition: Desired) -> Self {
        Self {
            status: SchemaStatus::default(),
            condition,
            changes: Vec::new(),
            repaired: Vec::new(),
            pruned: Vec::new(),
            check_soon: false,
        }
    }
}

/// One pass. `declared_elsewhere` names the items other DatabaseConnections on the same
/// server and database declare: `prune` leaves those alone.
pub async fn reconcile(
    ops: &dyn SchemaOps,
    spec: &SchemaSpec,
    previous: Option<&SchemaStatus>,
    server: &ServerInfo,
    declared_elsewhere: &BTreeSet<String>,
) -> SchemaReport {
    let mut owned: BTreeSet<String> = previous
        .map(|p| p.managed.iter().cloned().collect())
        .unwrap_or_default();
    let declared = match schema::declared(spec) {
        Ok(declared) => declared,
        Err(message) => {
            return failed(
                owned,
                "InvalidSchema",
                format!("{message}. Fix the manifest; the server's schema was not touched."),
            );
        }
    };
    let community = server.edition.eq_ignore_ascii_case("community");
    let existing = match ops.existing().await {
        Ok(existing) => existing,
        Err(error) => return check_failed(owned, &error),
    };
    let plan = |existing: &[schema::Existing], owned: &BTreeSet<String>| {
        schema::plan(
            &declared,
            existing,
            owned,
            declared_elsewhere,
            spec.prune,
            community,
        )
    };
    let first = plan(&existing, &owned);

    let mut problems = Vec::new();
    let mut changes = Vec::new();
    let mut repaired = Vec::new();
    let mut pruned = Vec::new();
    for remnant in &first.remnants {
        match ops.execute(schema::drop_statement(remnant)).await {
            Ok(()) => changes.push(format!(
                "dropped index {:?}, left by an interrupted creation of the constraint",
                remnant.name
            )),
            Err(error) => problems.push(apply_problem(&remnant.name, "index", &error)),
        }
    }
    for item in &first.create {
        match ops.execute(item.create_statement()).await {
            Ok(()) => {
                if owned.contains(&item.name) && !first.remnants.iter().any(|r| r.name == item.name)
                {
                    repaired.push(format!("{} {:?}", item.kind.noun(), item.name));
                }
                owned.insert(item.name.clone());
                changes.push(format!("created {} {:?}", item.kind.noun(), item.name));
            }
            Err(error) if error.to_string().contains("AlreadyExists") => {
                // Created by someone else since the server was read: in place, not ours.
                owned.remove(&item.name);
            }
            Err(error) if !error.server_answered() => {
                // The connection went down with the statement in flight: it may have taken
                // effect, or partly (see `schema::Plan::remnants`). The item is the operator's
                // either way, and the rest waits until the server answers again.
                owned.insert(item.name.clone());
                let message = format!(
                    "the connection was lost while creating {} {:?} ({error}); the rest is applied once the server answers again",
                    item.kind.noun(),
                    item.name
                );
                return SchemaReport {
                    changes,
                    repaired,
                    pruned,
                    ..failed(owned, "SchemaApplyFailed", message)
                };
            }
            Err(error) => problems.push(apply_problem(&item.name, item.kind.noun(), &error)),
        }
    }
    for item in &first.drop {
        match ops.execute(schema::drop_statement(item)).await {
            Ok(()) => {
                owned.remove(&item.name);
                pruned.push(item.name.clone());
                changes.push(format!(
                    "dropped {:?} (no longer declared, spec.schema.prune is on)",
                    item.name
                ));
            }
            Err(error) => problems.push(apply_problem(&item.name, "item", &error)),
        }
    }
    // After changes, read again so the report shows what the server now has (e.g. populating).
    let report_plan = if changes.is_empty() {
        first
    } else {
        match ops.existing().await {
            Ok(existing) => plan(&existing, &owned),
            Err(error) => return check_failed(owned, &error),
        }
    };
    problems.extend(plan_problems(&report_plan));
    // Items whose creation failed stay listed in the fresh plan too; keep the specific reason.
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.name.clone()));

    let in_place = declared
        .iter()
        .filter(|d| !problems.iter().any(|p| p.name == d.name))
        .count() as u32;
    let check_soon = !report_plan.populating.is_empty();
    let condition = condition(&problems, in_place);
    SchemaReport {
        status: SchemaStatus {
            managed: owned.into_iter().collect(),
            in_place,
            problems,
        },
        condition,
        changes,
        repaired,
        pruned,
        check_soon,
    }
}

/// Installs the declared PostgreSQL extensions that are missing. Extensions are never dropped.
pub async fn reconcile_extensions(
    ops: &dyn ExtensionOps,
    names: &[String],
    previous: Option<&SchemaStatus>,
) -> SchemaReport {
    let mut owned: BTreeSet<String> = previous
        .map(|p| p.managed.iter().cloned().collect())
        .unwrap_or_default();
    if let Some(bad) = names.iter().find(|n| !valid_extension_name(n)) {
        return failed(
            owned,
            "InvalidSchema",
            format!(
                "spec.schema.extensions: {bad:?} is not an extension name (lower-case letters, digits and _)"
            ),
        );
    }
    let installed = match ops.installed().await {
        Ok(installed) => installed,
        Err(error) => return check_failed(owned, &error),
    };
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    for name in names.iter().filter(|n| !installed.contains(n)) {
        match ops.install(name.clone()).await {
            Ok(()) => {
                owned.insert(name.clone());
                changes.push(format!("created extension {name:?}"));
            }
            Err(error) => {
                let text = error.to_string();
                let unavailable = ["0A000", "58P01", "is not available"]
                    .iter()
                    .any(|m| text.contains(m));
                let (reason, message) = if unavailable {
                    (
                        "ExtensionUnavailable",
                        format!(
                            "extension {name:?} is not available on the server ({text}); install its package on the server or remove it from the manifest"
                        ),
                    )
                } else {
                    (
                        "ApplyFailed",
                        format!("extension {name:?} could not be created: {text}"),
                    )
                };
                problems.push(SchemaProblem {
                    name: name.clone(),
                    reason: reason.into(),
                    message,
                });
            }
        }
    }
    let in_place = (names.len() - problems.len()) as u32;
    let condition = match problems.first() {
        None => Desired::new(
            SCHEMA_READY,
            Status::True,
            "SchemaApplied",
            format!("{in_place} declared extension(s) installed."),
        ),
        Some(first) => {
            let details: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
            let reason = if first.reason == "ExtensionUnavailable" {
                "ExtensionUnavailable"
            } else {
                "SchemaApplyFailed"
            };
            Desired::new(
                SCHEMA_READY,
                Status::False,
                reason,
                format!("{in_place} in place; {}.", details.join("; ")),
            )
        }
    };
    SchemaReport {
        status: SchemaStatus {
            managed: owned.into_iter().collect(),
            in_place,
            problems,
        },
        condition,
        changes,
        repaired: Vec::new(),
        pruned: Vec::new(),
        check_soon: false,
    }
}

fn valid_extension_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn plan_problems(plan: &Plan) -> Vec<SchemaProblem> {
    let problem = |name: &str, reason: &str, message: String| SchemaProblem {
        name: name.to_owned(),
        reason: reason.to_owned(),
        message,
    };
    let mut problems = Vec::new();
    for item in &plan.create {
        problems.push(problem(
            &item.name,
            "Missing",
            format!(
                "{} {:?} is not on the server yet",
                item.kind.noun(),
                item.name
            ),
        ));
    }
    for name in &plan.enterprise_only {
        problems.push(problem(name, "EnterpriseRequired", format!("constraint {name:?} is a nodeKey or notNull constraint, which needs Neo4j Enterprise; the server is Community. Use a unique constraint or an Enterprise server.")));
    }
    for (name, difference) in &plan.differing {
        problems.push(problem(
            name,
            "Differs",
            format!("{difference}; drop it on the server or rename it in the manifest"),
        ));
    }
    for name in &plan.failed {
        problems.push(problem(name, "IndexFailed", format!("index {name:?} is FAILED on the server; drop it so the operator can create it again")));
    }
    for (name, percent) in &plan.populating {
        problems.push(problem(
            name,
            "IndexPopulating",
            format!("index {name:?} is populating ({percent:.0}%)"),
        ));
    }
    for name in &plan.extra {
        problems.push(problem(name, "Extra", format!("{name:?} was created by the operator and is no longer declared; kept because spec.schema.prune is false")));
    }
    problems
}

fn apply_problem(name: &str, noun: &str, error: &EngineError) -> SchemaProblem {
    let text = error.to_string();
    let (reason, message) = if text.contains("ConstraintCreationFailed")
        || text.contains("ConstraintValidationFailed")
    {
        (
            "ConstraintViolatedByData",
            format!(
                "constraint {name:?} cannot be created because existing data violates it ({text}); fix the data and it is created on the next check"
            ),
        )
    } else {
        (
            "ApplyFailed",
            format!("{noun} {name:?} could not be applied: {text}"),
        )
    };
    SchemaProblem {
        name: name.to_owned(),
        reason: reason.to_owned(),
        message,
    }
}

/// `SchemaReady` from the problems, naming the most serious reason first.
fn condition(problems: &[SchemaProblem], in_place: u32) -> Desired {
    const SEVERITY: [(&str, &str); 8] = [
        ("ApplyFailed", "SchemaApplyFailed"),
        ("ConstraintViolatedByData", "ConstraintViolatedByData"),
        ("IndexFailed", "IndexFailed"),
        ("EnterpriseRequired", "EnterpriseRequired"),
        ("Differs", "SchemaDrift"),
        ("Missing", "SchemaDrift"),
        ("Extra", "SchemaDrift"),
        ("IndexPopulating", "IndexPopulating"),
    ];
    let Some(reason) = SEVERITY
        .iter()
        .find(|(problem, _)| problems.iter().any(|p| p.reason == *problem))
        .map(|(_, reason)| *reason)
    else {
        return Desired::new(
            SCHEMA_READY,
            Status::True,
            "SchemaApplied",
            format!("{in_place} declared constraint(s) and index(es) are in place."),
        );
    };
    let details: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
    Desired::new(
        SCHEMA_READY,
        Status::False,
        reason,
        format!("{in_place} in place; {}.", details.join("; ")),
    )
}

fn failed(owned: BTreeSet<String>, reason: &'static str, message: String) -> SchemaReport {
    SchemaReport {
        status: SchemaStatus {
            managed: owned.into_iter().collect(),
            in_place: 0,
            problems: Vec::new(),
        },
        condition: Desired::new(SCHEMA_READY, Status::False, reason, message),
        changes: Vec::new(),
        repaired: Vec::new(),
        pruned: Vec::new(),
        check_soon: false,
    }
}

fn check_failed(owned: BTreeSet<String>, error: &EngineError) -> SchemaReport {
    let mut report = failed(
        owned,
        "SchemaCheckFailed",
        format!("cannot read the server's schema: {error}"),
    );
    report.condition.status = Status::Unknown;
    report
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::{FutureExt, future::BoxFuture};

    use super::*;
    use crate::{
        api::{ConstraintSpec, ConstraintType, IndexSpec, IndexType},
        schema::Existing,
    };

    /// A fake server: a list of existing items; statements are recorded, and CREATE adds the
    /// item unless its name is in `violated` (standing for data that violates a constraint).
    /// A CREATE CONSTRAINT named in `crash` dies halfway, as Neo4j killed mid-statement would:
    /// the constraint's index exists, the constraint does not, the connection is gone.
    #[derive(Default)]
    struct FakeServer {
        items: Mutex<Vec<Existing>>,
        statements: Mutex<Vec<String>>,
        violated: Vec<&'static str>,
        crash: Mutex<Vec<&'static str>>,
        /// Created by someone else between the operator's read and its CREATE.
        raced: Vec<&'static str>,
    }

    fn range_index(name: &str) -> Existing {
        Existing {
            name: name.into(),
            is_constraint: false,
            type_: "RANGE".into(),
            entity: "NODE".into(),
            labels_or_types: vec!["POI".into()],
            properties: vec!["id".into()],
            state: "ONLINE".into(),
            population_percent: 100.0,
        }
    }

    impl SchemaOps for FakeServer {
        fn existing(&self) -> BoxFuture<'_, Result<Vec<Existing>, EngineError>> {
            let items = self.items.lock().unwrap().clone();
            async move { Ok(items) }.boxed()
        }

        fn execute(&self, statement: String) -> BoxFuture<'_, Result<(), EngineError>> {
            self.statements.lock().unwrap().push(statement.clone());
            let name = statement.split('`').nth(1).unwrap_or_default().to_owned();
            let mut crash = self.crash.lock().unwrap();
            let result = if let Some(i) = crash.iter().position(|c| *c == name) {
                crash.remove(i);
                self.items.lock().unwrap().push(range_index(&name));
                Err(EngineError::Unreachable {
                    endpoint: "127.0.0.1:7687".into(),
                    detail: "connection reset by peer".into(),
                })
            } else if self.violated.contains(&name.as_str()) {
                Err(EngineError::QueryFailed(
                    "Neo.ClientError.Schema.ConstraintCreationFailed: both nodes have id 1".into(),
                ))
            } else if statement.starts_with("DROP") {
                self.items.lock().unwrap().retain(|i| i.name != name);
                Ok(())
            } else if self.raced.contains(&name.as_str()) {
                self.items.lock().unwrap().push(range_index(&name));
                Err(EngineError::QueryFailed(format!(
                    "Neo.ClientError.Schema.IndexWithNameAlreadyExists: There already exists an index called '{name}'."
                )))
            } else {
                let is_constraint = statement.starts_with("CREATE CONSTRAINT");
                self.items.lock().unwrap().push(Existing {
                    name,
                    is_constraint,
                    type_: if is_constraint {
                        "UNIQUENESS".into()
                    } else {
                        "RANGE".into()
                    },
                    entity: "NODE".into(),
                    labels_or_types: vec!["POI".into()],
                    properties: vec!["id".into()],
                    state: "ONLINE".into(),
                    population_percent: 100.0,
                });
                Ok(())
            };
            async move { result }.boxed()
        }
    }

    fn spec(constraints: &[&str], indexes: &[&str], prune: bool) -> SchemaSpec {
        SchemaSpec {
            constraints: constraints
                .iter()
                .map(|n| ConstraintSpec {
                    name: n.to_string(),
                    label: Some("POI".into()),
                    relationship_type: None,
                    properties: vec!["id".into()],
                    type_: ConstraintType::Unique,
                })
                .collect(),
            indexes: indexes
                .iter()
                .map(|n| IndexSpec {
                    name: n.to_string(),
                    label: Some("POI".into()),
                    relationship_type: None,
                    properties: vec!["id".into()],
                    type_: IndexType::Range,
                })
                .collect(),
            prune,
            extensions: Vec::new(),
        }
    }

    /// One pass on a Community server, with nothing declared by other connections.
    async fn pass(
        server: &FakeServer,
        spec: &SchemaSpec,
        previous: Option<&SchemaStatus>,
    ) -> SchemaReport {
        reconcile(server, spec, previous, &community(), &BTreeSet::new()).await
    }

    fn community() -> ServerInfo {
        ServerInfo {
            agent: "Neo4j Kernel".into(),
            version: "5.26.0".into(),
            edition: "community".into(),
        }
    }

    /// A fake PostgreSQL: `available` can be installed, anything else is not on the server.
    struct FakeExtensions {
        installed: Mutex<Vec<String>>,
        available: Vec<&'static str>,
    }

    impl ExtensionOps for FakeExtensions {
        fn installed(&self) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
            let installed = self.installed.lock().unwrap().clone();
            async move { Ok(installed) }.boxed()
        }

        fn install(&self, name: String) -> BoxFuture<'_, Result<(), EngineError>> {
            let result = if self.available.contains(&name.as_str()) {
                self.installed.lock().unwrap().push(name);
                Ok(())
            } else {
                Err(EngineError::QueryFailed(format!(
                    "0A000 extension \"{name}\" is not available"
                )))
            };
            async move { result }.boxed()
        }
    }

    #[tokio::test]
    async fn extensions_are_installed_once_and_unavailable_ones_get_their_reason() {
        let server = FakeExtensions {
            installed: Mutex::new(vec!["plpgsql".into()]),
            available: vec!["pg_trgm"],
        };
        let names = vec!["pg_trgm".to_string(), "plpgsql".to_string()];
        let report = reconcile_extensions(&server, &names, None).await;
        assert_eq!(report.condition.status, Status::True);
        assert_eq!(report.changes, ["created extension \"pg_trgm\""]);
        let again = reconcile_extensions(&server, &names, Some(&report.status)).await;
        assert!(again.changes.is_empty());
        let missing = reconcile_extensions(&server, &["postgis".to_string()], None).await;
        assert_eq!(missing.condition.reason, "ExtensionUnavailable");
        assert!(missing.condition.message.contains("\"postgis\""));
    }

    #[tokio::test]
    async fn creates_missing_items_once_and_owns_them() {
        let server = FakeServer::default();
        let report = pass(&server, &spec(&["c1"], &["i1"], false), None).await;
        assert_eq!(report.condition.status, Status::True);
        assert_eq!(report.status.managed, ["c1", "i1"]);
        assert_eq!(report.changes.len(), 2);
        let again = pass(
            &server,
            &spec(&["c1"], &["i1"], false),
            Some(&report.status),
        )
        .await;
        assert!(again.changes.is_empty(), "a second pass changes nothing");
        assert_eq!(server.statements.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_item_someone_else_created_first_is_in_place_but_not_claimed() {
        let server = FakeServer {
            raced: vec!["i1"],
            ..Default::default()
        };
        let spec = spec(&["c1"], &["i1"], true);
        let report = pass(&server, &spec, None).await;
        assert_eq!(
            report.status.managed,
            ["c1"],
            "only what its own statement created"
        );
        assert_eq!(
            report.condition.status,
            Status::True,
            "{:?}",
            report.condition
        );
    }

    #[tokio::test]
    async fn prune_leaves_what_another_connection_declares() {
        let server = FakeServer::default();
        let first = pass(&server, &spec(&["c1"], &[], true), None).await;
        let elsewhere: BTreeSet<String> = ["c1".to_string()].into();
        let after = reconcile(
            &server,
            &spec(&[], &[], true),
            Some(&first.status),
            &community(),
            &elsewhere,
        )
        .await;
        assert!(after.pruned.is_empty());
        assert_eq!(
            after.status.managed,
            ["c1"],
            "still ours, to drop once nobody declares it"
        );
        let last = pass(&server, &spec(&[], &[], true), Some(&after.status)).await;
        assert_eq!(last.pruned, ["c1"]);
    }

    #[tokio::test]
    async fn an_owned_item_dropped_by_hand_is_recreated_and_reported_as_repaired() {
        let server = FakeServer::default();
        let first = pass(&server, &spec(&["c1"], &[], false), None).await;
        server.items.lock().unwrap().clear();
        let second = pass(&server, &spec(&["c1"], &[], false), Some(&first.status)).await;
        assert_eq!(second.repaired, ["constraint \"c1\""]);
        assert_eq!(second.condition.status, Status::True);
    }

    #[tokio::test]
    async fn removed_items_are_kept_as_extra_without_prune_and_dropped_with_it() {
        let server = FakeServer::default();
        let first = pass(&server, &spec(&["c1"], &["i1"], false), None).await;
        let kept = pass(&server, &spec(&["c1"], &[], false), Some(&first.status)).await;
        assert_eq!(kept.condition.reason, "SchemaDrift");
        assert_eq!(kept.status.problems[0].reason, "Extra");
        let pruned = pass(&server, &spec(&["c1"], &[], true), Some(&kept.status)).await;
        assert_eq!(pruned.condition.status, Status::True);
        assert_eq!(pruned.status.managed, ["c1"]);
        assert!(
            server
                .statements
                .lock()
                .unwrap()
                .iter()
                .any(|s| s == "DROP INDEX `i1` IF EXISTS")
        );
    }

    #[tokio::test]
    async fn a_crash_mid_create_is_owned_and_its_remnant_replaced_once_the_server_is_back() {
        let server = FakeServer {
            crash: Mutex::new(vec!["c1"]),
            ..Default::default()
        };
        let declared = spec(&["c1", "c2"], &[], false);
        let crashed = pass(&server, &declared, None).await;
        assert_eq!(crashed.condition.reason, "SchemaApplyFailed");
        assert_eq!(crashed.status.managed, ["c1"], "outcome unknown: owned");
        assert_eq!(
            server.statements.lock().unwrap().len(),
            1,
            "nothing more sent"
        );

        let back = pass(&server, &declared, Some(&crashed.status)).await;
        assert_eq!(back.condition.status, Status::True, "{:?}", back.condition);
        assert_eq!(back.status.managed, ["c1", "c2"]);
        assert!(back.repaired.is_empty());
        let statements = server.statements.lock().unwrap();
        assert_eq!(statements[1], "DROP INDEX `c1` IF EXISTS");
        assert!(statements[2].starts_with("CREATE CONSTRAINT `c1`"));
    }

    #[tokio::test]
    async fn an_index_made_by_hand_under_a_declared_constraint_name_is_never_dropped() {
        let server = FakeServer::default();
        server.items.lock().unwrap().push(range_index("c1"));
        let report = pass(&server, &spec(&["c1"], &[], false), None).await;
        assert_eq!(report.condition.reason, "SchemaDrift");
        assert_eq!(report.status.problems[0].reason, "Differs");
        assert!(server.statements.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_constraint_violated_by_data_is_named_and_the_others_still_apply() {
        let server = FakeServer {
            violated: vec!["c_bad"],
            ..Default::default()
        };
        let report = pass(&server, &spec(&["c_bad", "c_ok"], &["i1"], false), None).await;
        assert_eq!(report.condition.reason, "ConstraintViolatedByData");
        assert!(
            report.condition.message.contains("\"c_bad\""),
            "{}",
            report.condition.message
        );
        assert_eq!(report.status.managed, ["c_ok", "i1"]);
        assert_eq!(report.status.in_place, 2);
    }
}
