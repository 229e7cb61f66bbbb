//! From what one reconcile observed to the status it should leave. Pure: the controller sends
//! the result only when it differs from what is stored.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::{
    api::{
        BindingStatus, CredentialsStatus, DatabaseConnectionStatus, ProbeStatus, SchemaStatus,
        ServerInfo,
    },
    conditions::{
        self, CREDENTIALS_VALID, Change, Desired, REACHABLE, READY, RECONCILING, STALLED,
        Status::{False, True, Unknown},
        TLS_VERIFIED,
    },
    credentials::CredentialsError,
    duration::human,
    engine::{EngineError, FailureClass},
    members::{self, MemberFacts},
    settings::SpecError,
};

/// Why a suspended connection's Reachable and CredentialsValid are Unknown.
const SUSPENDED_MESSAGE: &str = "Probes are suspended by spec.suspend and the pool is closed; set spec.suspend to false to resume.";

/// What one reconcile found.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// No probe ran (none was due): the connection's conditions stay as they are.
    Unchanged,
    Suspended,
    InvalidSpec(&'a SpecError),
    Credentials(&'a CredentialsError),
    Connected {
        server: &'a ServerInfo,
        endpoint: &'a str,
        /// The login's username; empty for a token alone, `None` without a login.
        user: Option<&'a str>,
    },
    Failed {
        error: &'a EngineError,
        consecutive_failures: u32,
        failure_threshold: u32,
    },
}

/// Everything besides the outcome that status reports.
#[derive(Debug, Default)]
pub struct Facts {
    /// Whether TLS certificate checks are off; `None` when the spec could not be read.
    pub insecure_tls: Option<bool>,
    /// The login Secret in use, once the Secrets were read (`Some(None)`: the spec names no
    /// login); `None` to leave status as it is.
    pub credentials: Option<Option<CredentialsStatus>>,
    /// The latency to record, already filtered for material change by the caller.
    pub latency: Option<Duration>,
    /// The schema pass's result, when one ran.
    pub schema: Option<(SchemaStatus, Desired)>,
    /// The binding step's result, `None` to leave status as it is.
    pub binding: Option<BindingFacts>,
    /// The members the probe found (none for a single host), `None` to leave status as it is.
    pub members: Option<MemberFacts>,
}

/// The binding Secret as status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingFacts {
    /// The Secret written, `None` when there is none (removed, or not ours to write).
    pub status: Option<BindingStatus>,
    /// `BindingReady` set, or removed once `spec.binding` is gone.
    pub condition: Change,
}

pub fn desired(
    previous: &DatabaseConnectionStatus,
    outcome: &Outcome<'_>,
    facts: &Facts,
    generation: Option<i64>,
    now: Timestamp,
) -> DatabaseConnectionStatus {
    let mut changes = outcome_changes(previous, outcome, generation);
    changes.push(tls_change(facts.insecure_tls));
    if let Some((_, condition)) = &facts.schema {
        changes.push(Change::Set(condition.clone()));
    }
    let mut next = previous.clone();
    if let Some((schema, _)) = &facts.schema {
        next.schema = Some(schema.clone());
    }
    if let Some(binding) = &facts.binding {
        next.binding = binding.status.clone();
        changes.push(binding.condition.clone());
    }
    if let Some(members) = &facts.members {
        next.members = members::shown(&previous.members, members);
        changes.push(members::degraded(&next.members, members.max_lag));
    }
    next.conditions = conditions::merge(&previous.conditions, &changes, generation, now);
    next.observed_generation = generation;
    if let Some(credentials) = &facts.credentials {
        next.credentials = credentials.clone();
    }
    let mut probe = previous.probe.clone().unwrap_or_default();
    match outcome {
        Outcome::Connected { server, .. } => {
            next.server = Some((*server).clone());
            probe.consecutive_failures = 0;
        }
        Outcome::Failed {
            consecutive_failures,
            ..
        } => probe.consecutive_failures = *consecutive_failures,
        _ => {}
    }
    if let Some(latency) = facts.latency {
        probe.latency = Some(human(latency));
    }
    next.probe = Some(probe).filter(|p| *p != ProbeStatus::default());
    next
}

fn tls_change(insecure: Option<bool>) -> Change {
    match insecure {
        Some(true) => Change::Set(Desired::new(
            TLS_VERIFIED,
            False,
            "InsecureSkipVerify",
            "TLS certificate verification is off (spec.tls.insecureSkipVerify, a +ssc scheme or sslmode=require): the connection is encrypted but the server is not authenticated. Set spec.tls.caSecretRef and a +s scheme or sslmode=verify-full instead.",
        )),
        _ => Change::Remove(TLS_VERIFIED),
    }
}

fn outcome_changes(
    previous: &DatabaseConnectionStatus,
    outcome: &Outcome<'_>,
    generation: Option<i64>,
) -> Vec<Change> {
    let set = |type_, status, reason, message: String| {
        Change::Set(Desired::new(type_, status, reason, message))
    };
    match outcome {
        Outcome::Unchanged => Vec::new(),
        Outcome::Suspended => vec![
            // No Ready at all: kstatus reads Ready=False and Ready=Unknown as InProgress (a Flux
            // `wait` would never end) and only an absent Ready as Current; True would be false.
            Change::Remove(READY),
            set(REACHABLE, Unknown, "Suspended", SUSPENDED_MESSAGE.into()),
            set(
                CREDENTIALS_VALID,
                Unknown,
                "Suspended",
                SUSPENDED_MESSAGE.into(),
            ),
            Change::Remove(RECONCILING),
            Change::Remove(STALLED),
        ],
        Outcome::InvalidSpec(error) => {
            let message =
                format!("{error}. Fix the manifest; nothing is retried until it changes.");
            vec![
                set(READY, False, error.reason(), message.clone()),
                set(STALLED, True, error.reason(), message),
                Change::Remove(RECONCILING),
            ]
        }
        Outcome::Credentials(error) => {
            let reason = error.reason();
            let message = error.to_string();
            let mut changes = vec![
                set(READY, False, reason, message.clone()),
                set(CREDENTIALS_VALID, False, reason, message.clone()),
            ];
            if matches!(
                error,
                CredentialsError::SecretNotFound { .. } | CredentialsError::Api { .. }
            ) {
                // A Secret created after its DatabaseConnection is the normal GitOps order: wait.
                changes.push(set(RECONCILING, True, reason, message));
                changes.push(Change::Remove(STALLED));
            } else {
                changes.push(set(STALLED, True, reason, message));
                changes.push(Change::Remove(RECONCILING));
            }
            changes
        }
        Outcome::Connected {
            server,
            endpoint,
            user,
        } => {
            let (login_reason, login_message) = match user {
                Some("") => (
                    "Authenticated",
                    "The server accepted the password (token) from the Secret.".to_owned(),
                ),
                Some(user) => ("Authenticated", format!("Logged in as {user:?}.")),
                None => (
                    "NoLoginNeeded",
                    "spec.credentials names no login, and the server answered without one."
                        .to_owned(),
                ),
            };
            let edition = if server.edition.is_empty() {
                String::new()
            } else {
                format!(" ({})", server.edition)
            };
            vec![
                set(
                    READY,
                    True,
                    "Connected",
                    format!(
                        "Connected to {} {}{edition} at {endpoint}.",
                        server.agent, server.version
                    ),
                ),
                set(
                    REACHABLE,
                    True,
                    "Connected",
                    format!("{endpoint} answered the last probe."),
                ),
                set(CREDENTIALS_VALID, True, login_reason, login_message),
                Change::Remove(RECONCILING),
                Change::Remove(STALLED),
            ]
        }
        Outcome::Failed {
            error,
            consecutive_failures,
            failure_threshold,
        } => failure_changes(
            previous,
            error,
            *consecutive_failures,
            *failure_threshold,
            generation,
        ),
    }
}

fn failure_changes(
    previous: &DatabaseConnectionStatus,
    error: &EngineError,
    failures: u32,
    threshold: u32,
    generation: Option<i64>,
) -> Vec<Change> {
    let reason = error.reason();
    let message = format!(
        "{}. {}",
        error.to_string().trim_end_matches('.'),
        error.hint()
    );
    let mut changes = Vec::new();
    changes.push(if error.server_answered() {
        Change::Set(Desired::new(
            REACHABLE,
            True,
            "ServerAnswered",
            "The server answered, but the probe failed; see the Ready condition.",
        ))
    } else {
        Change::Set(Desired::new(REACHABLE, False, reason, message.clone()))
    });
    if error.class() == FailureClass::Authentication {
        changes.push(Change::Set(Desired::new(
            CREDENTIALS_VALID,
            False,
            reason,
            message.clone(),
        )));
    }
    // Only a Ready earned under this generation of the spec rides out a few failures: one from
    // before an edit (a new URI, port or login) says nothing about the spec as it is now.
    let was_ready = conditions::find(&previous.conditions, READY)
        .is_some_and(|r| r.status == "True" && r.observed_generation == generation);
    let tolerated = was_ready && error.class() == FailureClass::Transient && failures < threshold;
    if !tolerated {
        changes.push(Change::Set(Desired::new(
            READY,
            False,
            reason,
            message.clone(),
        )));
    }
    match error.class() {
        FailureClass::Transient => {
            // No retry delay in the message: a long outage should not rewrite it on every attempt.
            changes.push(Change::Set(Desired::new(
                RECONCILING,
                True,
                reason,
                format!("Probe failed {failures} time(s) in a row; retrying with backoff."),
            )));
            changes.push(Change::Remove(STALLED));
        }
        FailureClass::Authentication | FailureClass::Permanent => {
            changes.push(Change::Set(Desired::new(STALLED, True, reason, message)));
            changes.push(Change::Remove(RECONCILING));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::find;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn server() -> ServerInfo {
        ServerInfo {
            agent: "Neo4j Kernel".into(),
            version: "5.26.0".into(),
            edition: "community".into(),
        }
    }

    fn connected(previous: &DatabaseConnectionStatus) -> DatabaseConnectionStatus {
        let server = server();
        let outcome = Outcome::Connected {
            server: &server,
            endpoint: "db:7687",
            user: Some("neo4j"),
        };
        desired(previous, &outcome, &Facts::default(), Some(1), now())
    }

    fn failed(
        previous: &DatabaseConnectionStatus,
        error: &EngineError,
        failures: u32,
    ) -> DatabaseConnectionStatus {
        let outcome = Outcome::Failed {
            error,
            consecutive_failures: failures,
            failure_threshold: 3,
        };
        desired(previous, &outcome, &Facts::default(), Some(1), now())
    }

    fn suspended(previous: &DatabaseConnectionStatus) -> DatabaseConnectionStatus {
        desired(
            previous,
            &Outcome::Suspended,
            &Facts::default(),
            Some(2),
            now(),
        )
    }

    fn unreachable() -> EngineError {
        EngineError::Unreachable {
            endpoint: "db:7687".into(),
            detail: "connection refused".into(),
        }
    }

    #[test]
    fn connected_sets_ready_reachable_and_credentials_and_the_server() {
        let status = connected(&Default::default());
        for type_ in [READY, REACHABLE, CREDENTIALS_VALID] {
            assert_eq!(
                find(&status.conditions, type_).unwrap().status,
                "True",
                "{type_}"
            );
        }
        assert_eq!(status.server.unwrap().version, "5.26.0");
        let ready = find(&status.conditions, READY).unwrap();
        assert!(
            ready.message.contains("Neo4j Kernel 5.26.0 (community)"),
            "{}",
            ready.message
        );
        assert!(find(&status.conditions, RECONCILING).is_none());
    }

    #[test]
    fn a_login_removed_from_the_spec_leaves_status_naming_no_secret() {
        let with_login = Facts {
            credentials: Some(Some(CredentialsStatus {
                secret_name: "login".into(),
                secret_resource_version: "7".into(),
            })),
            ..Facts::default()
        };
        let server = ServerInfo::default();
        let outcome = |user| Outcome::Connected {
            server: &server,
            endpoint: "graph:8000",
            user,
        };
        let before = desired(
            &Default::default(),
            &outcome(Some("app")),
            &with_login,
            Some(1),
            now(),
        );
        assert!(before.credentials.is_some());
        // A probe that read no Secret (a failure before the read) leaves it as it was.
        let unread = desired(
            &before,
            &outcome(Some("app")),
            &Facts::default(),
            Some(1),
            now(),
        );
        assert_eq!(unread.credentials, before.credentials);
        let without = Facts {
            credentials: Some(None),
            ..Facts::default()
        };
        let after = desired(&before, &outcome(None), &without, Some(2), now());
        assert_eq!(after.credentials, None);
        assert_eq!(
            find(&after.conditions, CREDENTIALS_VALID).unwrap().reason,
            "NoLoginNeeded"
        );
    }

    #[test]
    fn a_ready_connection_tolerates_transient_failures_below_the_threshold() {
        let ready = connected(&Default::default());
        let once = failed(&ready, &unreachable(), 1);
        assert_eq!(find(&once.conditions, READY).unwrap().status, "True");
        assert_eq!(
            find(&once.conditions, REACHABLE).unwrap().reason,
            "Unreachable"
        );
        assert_eq!(once.probe.as_ref().unwrap().consecutive_failures, 1);
        let thrice = failed(&once, &unreachable(), 3);
        let ready_condition = find(&thrice.conditions, READY).unwrap();
        assert_eq!(
            (
                ready_condition.status.as_str(),
                ready_condition.reason.as_str()
            ),
            ("False", "Unreachable")
        );
    }

    #[test]
    fn a_ready_connection_edited_reports_the_first_failure_at_once() {
        let ready = connected(&Default::default());
        let outcome = Outcome::Failed {
            error: &unreachable(),
            consecutive_failures: 1,
            failure_threshold: 3,
        };
        let edited = desired(&ready, &outcome, &Facts::default(), Some(2), now());
        let ready_condition = find(&edited.conditions, READY).unwrap();
        assert_eq!(
            (
                ready_condition.status.as_str(),
                ready_condition.reason.as_str(),
                ready_condition.observed_generation
            ),
            ("False", "Unreachable", Some(2))
        );
    }

    #[test]
    fn a_never_ready_connection_reports_the_first_failure_at_once() {
        let status = failed(&Default::default(), &unreachable(), 1);
        assert_eq!(
            find(&status.conditions, READY).unwrap().reason,
            "Unreachable"
        );
        assert_eq!(
            find(&status.conditions, RECONCILING).unwrap().status,
            "True"
        );
    }

    #[test]
    fn authentication_failure_is_stalled_and_marks_credentials_invalid_at_once() {
        let ready = connected(&Default::default());
        let error = EngineError::AuthenticationFailed {
            user: "app".into(),
            detail: "unauthorized".into(),
        };
        let status = failed(&ready, &error, 1);
        assert_eq!(
            find(&status.conditions, READY).unwrap().reason,
            "AuthenticationFailed"
        );
        assert_eq!(
            find(&status.conditions, CREDENTIALS_VALID).unwrap().status,
            "False"
        );
        assert_eq!(find(&status.conditions, REACHABLE).unwrap().status, "True");
        assert_eq!(find(&status.conditions, STALLED).unwrap().status, "True");
        assert!(find(&status.conditions, RECONCILING).is_none());
    }

    #[test]
    fn the_same_outcome_twice_yields_an_identical_status() {
        let first = connected(&Default::default());
        assert_eq!(connected(&first), first);
        let failing = failed(&Default::default(), &unreachable(), 4);
        assert_eq!(failed(&failing, &unreachable(), 4), failing);
    }

    #[test]
    fn missing_secret_waits_while_a_missing_key_stalls() {
        let missing = CredentialsError::SecretNotFound {
            name: "db".into(),
            namespace: "ns".into(),
            keys: "\"username\" and \"password\"".into(),
        };
        let status = desired(
            &Default::default(),
            &Outcome::Credentials(&missing),
            &Facts::default(),
            Some(1),
            now(),
        );
        assert_eq!(
            find(&status.conditions, READY).unwrap().reason,
            "SecretNotFound"
        );
        assert_eq!(
            find(&status.conditions, RECONCILING).unwrap().status,
            "True"
        );
        assert!(find(&status.conditions, STALLED).is_none());

        let key = CredentialsError::KeyMissing {
            name: "db".into(),
            key: "password".into(),
            field: "credentials.secretRef.passwordKey",
        };
        let status = desired(
            &status,
            &Outcome::Credentials(&key),
            &Facts::default(),
            Some(1),
            now(),
        );
        assert_eq!(
            find(&status.conditions, STALLED).unwrap().reason,
            "SecretKeyMissing"
        );
        assert!(find(&status.conditions, RECONCILING).is_none());
    }

    #[test]
    fn suspended_has_no_ready_and_unknown_probes_whatever_came_before() {
        let failing = failed(&connected(&Default::default()), &unreachable(), 5);
        for previous in [Default::default(), connected(&Default::default()), failing] {
            let status = suspended(&previous);
            // Never Ready=True; and no Ready=False/Unknown either, which kstatus reads as InProgress.
            assert!(find(&status.conditions, READY).is_none(), "{status:?}");
            for type_ in [REACHABLE, CREDENTIALS_VALID] {
                let c = find(&status.conditions, type_).unwrap();
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    ("Unknown", "Suspended"),
                    "{type_}"
                );
                assert!(
                    c.message.contains("set spec.suspend to false"),
                    "{}",
                    c.message
                );
                assert_eq!(c.observed_generation, Some(2));
            }
            for type_ in [RECONCILING, STALLED] {
                assert!(find(&status.conditions, type_).is_none(), "{type_}");
            }
            let again = desired(
                &status,
                &Outcome::Suspended,
                &Facts::default(),
                Some(2),
                now(),
            );
            assert_eq!(again, status, "a second suspended reconcile writes nothing");
        }
    }

    #[test]
    fn resuming_reports_ready_again() {
        let resumed = connected(&suspended(&connected(&Default::default())));
        for type_ in [READY, REACHABLE, CREDENTIALS_VALID] {
            assert_eq!(find(&resumed.conditions, type_).unwrap().status, "True");
        }
    }

    #[test]
    fn insecure_tls_shows_as_a_warning_condition() {
        let facts = Facts {
            insecure_tls: Some(true),
            ..Default::default()
        };
        let server = server();
        let outcome = Outcome::Connected {
            server: &server,
            endpoint: "db:7687",
            user: Some("neo4j"),
        };
        let status = desired(&Default::default(), &outcome, &facts, Some(1), now());
        let tls = find(&status.conditions, TLS_VERIFIED).unwrap();
        assert_eq!(
            (tls.status.as_str(), tls.reason.as_str()),
            ("False", "InsecureSkipVerify")
        );
    }
}
