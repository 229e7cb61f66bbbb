//! The settings an engine is given, validated (`check` makes them from a spec), and the spec
//! problems that stop the operator from making them.

use std::time::Duration;

use crate::{api::CaSecretRef, duration, engine::descriptor::Descriptor};

/// Everything needed to open a pool and probe it, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionSettings {
    pub engine: &'static Descriptor,
    /// The URI as written; validated to carry no credentials.
    pub uri: String,
    /// `host:port`, for messages.
    pub endpoint: String,
    /// The (first) host and port from the URI (the port defaulted per engine), for drivers that
    /// take them apart.
    pub host: String,
    pub port: u16,
    /// Every host listed in the URI with its port, the first one included (PostgreSQL may list
    /// several: `postgres://h1:5432,h2:5433/db`).
    pub hosts: Vec<(String, u16)>,
    pub tls: TlsMode,
    /// Whether the certificate must name `host`. False only for PostgreSQL's `sslmode=verify-ca`,
    /// which checks that the certificate chains to a trusted CA and nothing more.
    pub verify_hostname: bool,
    /// From `spec.database`, or for PostgreSQL from the URI path.
    pub database: Option<String>,
    pub pool: PoolSettings,
    /// `spec.http`, for the engine that reads it.
    pub http: Option<crate::engine::http::spec::HttpSpec>,
    pub health: HealthSettings,
    pub retry: RetrySettings,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Plain,
    /// Verify the server against the system roots, or against this CA.
    Verified(Option<CaSecretRef>),
    /// Encrypt but accept any certificate: `insecureSkipVerify`, a `+ssc` scheme, or PostgreSQL's
    /// `sslmode=require`.
    InsecureSkipVerify,
}

/// The most sessions the operator uses at once on one connection: a probe and a schema pass,
/// with room to spare. Pools stop here whatever `spec.pool.maxSize` allows, because deadpool
/// (under the PostgreSQL pool and neo4rs) sets aside a slot for every session it may open, up
/// front: 50 of them per connection were 12 MB of heap per 1,000 PostgreSQL connections.
pub const SESSIONS_AT_ONCE: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolSettings {
    /// `spec.pool.maxSize`, at most [`SESSIONS_AT_ONCE`].
    pub max_size: usize,
    pub connection_timeout: Duration,
    pub acquisition_timeout: Duration,
    pub max_lifetime: Duration,
    pub idle_timeout: Duration,
    pub fetch_size: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    /// A standby further behind than this makes the connection Degraded (PostgreSQL).
    pub max_replication_lag: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

/// A spec the operator cannot act on. Each message names the field and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("spec.uri {uri:?} is not a valid URI ({detail}); write it like {example}")]
    MalformedUri {
        /// The URI with anything before an `@` masked.
        uri: String,
        detail: String,
        example: &'static str,
    },
    #[error("spec.engine {engine:?} is not supported; use {supported}")]
    UnknownEngine { engine: String, supported: String },
    #[error(
        "spec.credentials is required for engine {0}: name the Secret that holds the login in spec.credentials.secretRef"
    )]
    CredentialsMissing(&'static str),
    #[error(
        "spec.uri scheme {scheme:?} is not supported for engine {engine}; use one of {supported}"
    )]
    UnsupportedScheme {
        scheme: String,
        engine: &'static str,
        supported: String,
    },
    #[error(
        "spec.uri must not carry a username or password; put them in the Secret named by spec.credentials.secretRef"
    )]
    CredentialsInUri,
    #[error("spec.uri {0:?} has no host")]
    MissingHost(String),
    /// The engine's own words for what its URI may carry.
    #[error("{0}")]
    UnexpectedUriParts(&'static str),
    #[error("{field}: {source}")]
    BadDuration {
        field: &'static str,
        #[source]
        source: duration::ParseError,
    },
    #[error("{field} must be greater than zero")]
    ZeroDuration { field: &'static str },
    #[error("spec.retry.maxDelay must not be shorter than spec.retry.initialDelay")]
    RetryBoundsInverted,
    #[error("spec.tls: set either caSecretRef or insecureSkipVerify, not both")]
    TlsConflict,
    /// Completed by the engine's `tls_applies`.
    #[error("spec.tls applies only {0}")]
    TlsNotApplicable(&'static str),
    #[error(
        "the database in spec.uri must be one name like spec.database (letters, digits, '.', '_', '-'; at most 63)"
    )]
    InvalidDatabaseInUri,
    #[error(
        "spec.database {in_spec:?} differs from the database {in_uri:?} in spec.uri; name it in one place"
    )]
    DatabaseConflict { in_spec: String, in_uri: String },
    #[error(
        "spec.uri sslmode={0} falls back silently between plain and TLS, so the operator could not report which one is in use; use sslmode=disable, require, verify-ca or verify-full"
    )]
    SslModeFallback(&'static str),
    #[error("spec.uri sslmode is not supported; use disable, require, verify-ca or verify-full")]
    UnsupportedSslMode,
    #[error("{field} must be at least 1")]
    ZeroCount { field: &'static str },
    #[error(
        "{field} {referenced:?} is refused: Secrets are read only from the DatabaseConnection's own namespace{own}; copy the Secret there and remove {field}"
    )]
    SecretRefCrossNamespace {
        field: &'static str,
        referenced: String,
        /// ` ("NAME")`, or empty where the connection's namespace is not known (offline checks).
        own: String,
    },
    #[error(
        "the binding Secret would be named {name:?}, which is the {role} Secret; set spec.binding.secretName to another name"
    )]
    BindingNameTaken { name: String, role: &'static str },
}

impl SpecError {
    /// The field the problem is in, for `file:line` reports.
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::BadDuration { field, .. }
            | SpecError::ZeroDuration { field }
            | SpecError::ZeroCount { field }
            | SpecError::SecretRefCrossNamespace { field, .. } => field,
            SpecError::BindingNameTaken { .. } => "spec.binding.secretName",
            SpecError::RetryBoundsInverted => "spec.retry",
            SpecError::TlsConflict | SpecError::TlsNotApplicable(_) => "spec.tls",
            SpecError::UnknownEngine { .. } => "spec.engine",
            SpecError::CredentialsMissing(_) => "spec.credentials",
            SpecError::DatabaseConflict { .. } => "spec.database",
            SpecError::MalformedUri { .. }
            | SpecError::UnsupportedScheme { .. }
            | SpecError::CredentialsInUri
            | SpecError::MissingHost(_)
            | SpecError::UnexpectedUriParts(_)
            | SpecError::InvalidDatabaseInUri
            | SpecError::SslModeFallback(_)
            | SpecError::UnsupportedSslMode => "spec.uri",
        }
    }

    /// The `Ready` reason: a cross-namespace reference gets its own, since it is a policy the
    /// user may not expect rather than a typo.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::SecretRefCrossNamespace { .. } => "SecretRefCrossNamespace",
            _ => "InvalidSpec",
        }
    }
}
