//! The engine boundary: how to open a pool for one connection and probe it, and how a
//! database failure is classified. One implementation per engine; `for_engine` wires them.

pub mod neo4j;
pub mod postgres;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;

use crate::{
    api::{Engine, ServerInfo},
    credentials::Credentials,
    settings::ConnectionSettings,
};

/// Opens pools for one kind of database.
pub trait Connector: Send + Sync {
    /// Builds a pool. Drivers connect lazily, so this does no network I/O and a wrong password
    /// shows on the first probe.
    fn open(
        &self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Pool>, EngineError>;
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

pub fn for_engine(engine: Engine) -> &'static dyn Connector {
    match engine {
        Engine::Neo4j => &neo4j::Neo4jConnector,
        Engine::Postgres => &postgres::PostgresConnector,
    }
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
    PermissionDenied { user: String, detail: String },
    #[error("the probe query failed: {0}")]
    QueryFailed(String),
    #[error("the driver rejected the connection settings: {0}")]
    Configuration(String),
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
        }
    }

    /// Whether the server itself answered (so it is reachable even though the probe failed).
    pub fn server_answered(&self) -> bool {
        matches!(
            self,
            EngineError::AuthenticationFailed { .. }
                | EngineError::DatabaseNotFound { .. }
                | EngineError::PermissionDenied { .. }
                | EngineError::QueryFailed(_)
                | EngineError::Transient(_)
        )
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
                "Fix the username/password in the credentials Secret (or the user on the server); the operator retries at once when the Secret changes and otherwise only every few minutes, so the account is not locked out."
            }
            EngineError::DatabaseNotFound { .. } => {
                "Create the database on the server or correct spec.database."
            }
            EngineError::Tls(_) => {
                "Check the scheme (PostgreSQL: sslmode) in spec.uri and the CA in spec.tls.caSecretRef."
            }
            EngineError::Transient(_) => {
                "The server's code above says what is short (memory, a leader election, locks); retrying with backoff."
            }
            EngineError::PermissionDenied { .. } => {
                "The login works but lacks a privilege: Neo4j needs ACCESS on the database for probes and INDEX MANAGEMENT and CONSTRAINT MANAGEMENT (plus SHOW INDEX and SHOW CONSTRAINT) for spec.schema; PostgreSQL needs CONNECT on the database and CREATE for extensions. Grant it to the user or remove what needs it from the spec."
            }
            EngineError::QueryFailed(_) => {
                "The server's message above says why; retrying with backoff."
            }
            EngineError::Configuration(_) => "Correct the spec.",
        }
    }
}
