//! The engine boundary: what an engine says about itself (`descriptor`), how to open a pool
//! for one connection and probe it, and how a database failure is classified. One module per
//! engine; `engines!` below wires them, and is the only line an engine adds outside its module.

pub mod descriptor;
pub mod readme;
pub mod rules;
pub mod sections;
pub mod sslmode;
pub mod tls;

use std::time::Duration;

use futures::future::BoxFuture;

pub use descriptor::{Descriptor, Reason};

use crate::api::ServerInfo;

/// Declares each engine's module and lists its `ENGINE` descriptor in `ENGINES`.
macro_rules! engines {
    ($($module:ident),+ $(,)?) => {
        $(pub mod $module;)+
        /// Every engine, in the order the CRD and the README list them.
        pub static ENGINES: &[&Descriptor] = &[$(&$module::ENGINE),+];
    };
}

engines!(neo4j, postgres, mysql, http);

/// The login of an engine that needs one (`Login::Required`: the spec was checked to name it).
pub fn required_login(
    credentials: &crate::credentials::Credentials,
) -> Result<&crate::credentials::Login, EngineError> {
    credentials
        .login
        .as_ref()
        .ok_or_else(|| EngineError::Configuration("spec.credentials names no login Secret".into()))
}

/// The engine registered under `name` (the value of `spec.engine`).
pub fn named(name: &str) -> Option<&'static Descriptor> {
    ENGINES.iter().copied().find(|e| e.name == name)
}

/// The registered names, the values `spec.engine` may take.
pub fn names() -> Vec<&'static str> {
    ENGINES.iter().map(|e| e.name).collect()
}

/// `a, b or c`.
pub fn or_list(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => items.join(""),
    }
}

/// An error with its causes, `: `-joined: drivers often print only their own layer.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A connection pool kept between health checks.
pub trait Pool: Send + Sync {
    /// The cheapest round trip that proves the server answers for this login.
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>>;
    /// Asks the server what it is; run when a pool is new.
    fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>>;
    /// Schema management, for engines that have it.
    fn schema(&self) -> Option<&dyn SchemaOps> {
        None
    }
    /// Extension management, for engines that have it.
    fn extensions(&self) -> Option<&dyn ExtensionOps> {
        None
    }
    /// Connections open and idle, where the driver tells (neo4rs does not).
    fn usage(&self) -> Option<PoolUsage> {
        None
    }
    /// Every host of a URI that lists several, as the last probe found them; empty otherwise.
    fn members(&self) -> Vec<Member> {
        Vec::new()
    }
}

/// One host of a connection whose URI lists several, as a probe found it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// `host:port` as listed.
    pub address: String,
    /// `None` when it did not answer.
    pub role: Option<Role>,
    /// Why it did not answer.
    pub problem: Option<String>,
    /// Whether sessions go to it.
    pub serving: bool,
    /// How long since the last transaction it replayed was committed (a standby's).
    pub lag: Option<Duration>,
    /// How many bytes of WAL it has yet to replay (a standby's, while a primary answers).
    pub lag_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: usize,
    pub idle: usize,
}

/// Installing extensions (PostgreSQL).
pub trait ExtensionOps: Send + Sync {
    /// Names of the installed extensions.
    fn installed(&self) -> BoxFuture<'_, Result<Vec<String>, EngineError>>;
    /// `CREATE EXTENSION IF NOT EXISTS` with the name quoted.
    fn install(&self, name: String) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// Reading and changing constraints and indexes (Neo4j).
pub trait SchemaOps: Send + Sync {
    /// Every constraint, and every index that no constraint owns.
    fn existing(&self) -> BoxFuture<'_, Result<Vec<crate::schema::Existing>, EngineError>>;
    /// Runs one statement built by `crate::schema`.
    fn execute(&self, statement: String) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// The longest one schema statement (or schema read) may take: creating a constraint scans the
/// data it covers, so this is longer than a probe's timeout, but it is bounded.
pub const SCHEMA_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one schema statement within `SCHEMA_STATEMENT_TIMEOUT`.
pub async fn schema_statement<T>(
    endpoint: &str,
    statement: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(SCHEMA_STATEMENT_TIMEOUT, statement)
        .await
        .unwrap_or_else(|_elapsed| {
            Err(EngineError::Timeout {
                endpoint: endpoint.to_owned(),
                timeout: SCHEMA_STATEMENT_TIMEOUT,
            })
        })
}

/// A failed connect or probe, classified so the reconciler can decide how to retry.
/// Messages carry no secrets: drivers' error texts name hosts and server codes only.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    #[error("cannot reach the server at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the server at {endpoint} did not answer within {}", crate::duration::human(*.timeout))]
    Timeout { endpoint: String, timeout: Duration },
    #[error("the server refused the login for user {user:?}: {detail}")]
    AuthenticationFailed { user: String, detail: String },
    #[error("database {database:?} does not exist on the server")]
    DatabaseNotFound { database: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("the server is temporarily unavailable: {0}")]
    Transient(String),
    #[error("the server refused the operation for user {user:?}: {detail}")]
    PermissionDenied {
        user: String,
        detail: String,
        /// The privileges this engine needs, for the hint.
        needs: &'static str,
    },
    #[error("the probe query failed: {0}")]
    QueryFailed(String),
    #[error("the driver rejected the connection settings: {0}")]
    Configuration(String),
    /// A reason of one engine's own (listed in its descriptor).
    #[error("{detail}")]
    Engine {
        reason: &'static Reason,
        detail: String,
    },
}

/// The reasons every engine shares (`EngineError`'s own variants).
pub const SHARED_REASONS: [&str; 9] = [
    "Unreachable",
    "Timeout",
    "AuthenticationFailed",
    "DatabaseNotFound",
    "TLSError",
    "TransientError",
    "PermissionDenied",
    "ProbeFailed",
    "InvalidSpec",
];

/// Every reason a probe can fail with: the shared ones, then each engine's own.
pub fn failure_reasons() -> impl Iterator<Item = &'static str> {
    SHARED_REASONS.into_iter().chain(
        ENGINES
            .iter()
            .flat_map(|e| e.reasons.iter().map(|r| r.name)),
    )
}

/// How a failure should be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Network or server trouble: retry with backoff.
    Transient,
    /// The server answered but refused the login: retry rarely, so the account is not locked.
    Authentication,
    /// Only a change to the manifest or the server's setup can fix it.
    Permanent,
}

impl EngineError {
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Unreachable { .. } => "Unreachable",
            EngineError::Timeout { .. } => "Timeout",
            EngineError::AuthenticationFailed { .. } => "AuthenticationFailed",
            EngineError::DatabaseNotFound { .. } => "DatabaseNotFound",
            EngineError::Tls(_) => "TLSError",
            EngineError::Transient(_) => "TransientError",
            EngineError::PermissionDenied { .. } => "PermissionDenied",
            EngineError::QueryFailed(_) => "ProbeFailed",
            EngineError::Configuration(_) => "InvalidSpec",
            EngineError::Engine { reason, .. } => reason.name,
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            EngineError::Unreachable { .. }
            | EngineError::Timeout { .. }
            | EngineError::Transient(_)
            | EngineError::QueryFailed(_) => FailureClass::Transient,
            EngineError::AuthenticationFailed { .. } => FailureClass::Authentication,
            EngineError::DatabaseNotFound { .. }
            | EngineError::Tls(_)
            | EngineError::PermissionDenied { .. }
            | EngineError::Configuration(_) => FailureClass::Permanent,
            EngineError::Engine { reason, .. } => reason.class,
        }
    }

    /// Whether the server itself answered (so it is reachable even though the probe failed).
    pub fn server_answered(&self) -> bool {
        match self {
            EngineError::Engine { reason, .. } => reason.server_answered,
            _ => matches!(
                self,
                EngineError::AuthenticationFailed { .. }
                    | EngineError::DatabaseNotFound { .. }
                    | EngineError::PermissionDenied { .. }
                    | EngineError::QueryFailed(_)
                    | EngineError::Transient(_)
            ),
        }
    }

    /// What the user should do next, appended to condition messages.
    pub fn hint(&self) -> &'static str {
        match self {
            EngineError::Unreachable { .. } => {
                "Check that the server runs and that spec.uri names its host and port; the operator keeps retrying with backoff."
            }
            EngineError::Timeout { .. } => {
                "The server may be overloaded or a firewall drops packets; raise spec.healthCheck.timeout if it is just slow. Retrying with backoff."
            }
            EngineError::AuthenticationFailed { .. } => {
                "Fix the username/password in the credentials Secret (or the user on the server); with spec.tls.clientCertSecretRef, check that the certificate names the user (its CN) and is signed by a CA the server trusts. The operator retries at once when a Secret changes and otherwise only every few minutes, so the account is not locked out."
            }
            EngineError::DatabaseNotFound { .. } => {
                "Create the database on the server or correct spec.database."
            }
            EngineError::Tls(_) => {
                "Check the TLS choice in spec.uri (its scheme, or sslmode) and the CA in spec.tls.caSecretRef."
            }
            EngineError::Transient(_) => {
                "The server's code above says what is short (memory, a leader election, locks); retrying with backoff."
            }
            EngineError::PermissionDenied { needs, .. } => needs,
            EngineError::QueryFailed(_) => {
                "The server's message above says why; retrying with backoff."
            }
            EngineError::Configuration(_) => "Correct the spec.",
            EngineError::Engine { reason, .. } => reason.hint,
        }
    }
}
