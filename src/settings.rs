//! Validation of a `DatabaseConnectionSpec` into settings the engines use. Pure: no I/O.
//! The CRD's schema and CEL rules reject most mistakes at apply time; this is the second line,
//! for objects written before a rule existed or sent past the apiserver's checks.

use std::time::Duration;

use url::Url;

use crate::{
    api::{CaSecretRef, DatabaseConnectionSpec, Engine},
    duration,
};

/// Everything needed to open a pool and probe it, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionSettings {
    pub engine: Engine,
    /// The URI as written; validated to carry no credentials.
    pub uri: String,
    /// `host:port`, for messages.
    pub endpoint: String,
    pub tls: TlsMode,
    pub database: Option<String>,
    pub pool: PoolSettings,
    pub health: HealthSettings,
    pub retry: RetrySettings,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Plain,
    /// Verify the server against the system roots, or against this CA.
    Verified(Option<CaSecretRef>),
    /// Accept any certificate: `insecureSkipVerify` or a `+ssc` scheme.
    InsecureSkipVerify,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolSettings {
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

/// A spec the operator cannot act on. Each message names the field and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("spec.uri {uri:?} is not a valid URI ({detail}); write it like bolt://host:7687")]
    MalformedUri { uri: String, detail: String },
    #[error(
        "spec.uri scheme {scheme:?} is not supported for engine {engine}; use one of {supported}"
    )]
    UnsupportedScheme {
        scheme: String,
        engine: &'static str,
        supported: &'static str,
    },
    #[error(
        "spec.uri must not carry a username or password; put them in the Secret named by spec.credentials.secretRef"
    )]
    CredentialsInUri,
    #[error("spec.uri {0:?} has no host")]
    MissingHost(String),
    #[error(
        "spec.uri must name only the server (no path, query or fragment); put the database in spec.database"
    )]
    UnexpectedUriParts,
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
    #[error("spec.tls applies only to TLS schemes (bolt+s://, neo4j+s://); the uri uses {0}://")]
    TlsWithoutTlsScheme(String),
    #[error("{field} must be at least 1")]
    ZeroCount { field: &'static str },
}

const NEO4J_SCHEMES: &str = "bolt://, bolt+s://, bolt+ssc://, neo4j://, neo4j+s://, neo4j+ssc://";

impl ConnectionSettings {
    pub fn from_spec(spec: &DatabaseConnectionSpec) -> Result<Self, SpecError> {
        let (endpoint, tls) = parse_uri(spec)?;
        let pool = PoolSettings {
            max_size: count("spec.pool.maxSize", spec.pool.max_size)?,
            connection_timeout: positive(
                "spec.pool.connectionTimeout",
                &spec.pool.connection_timeout,
            )?,
            acquisition_timeout: positive(
                "spec.pool.acquisitionTimeout",
                &spec.pool.acquisition_timeout,
            )?,
            max_lifetime: positive("spec.pool.maxLifetime", &spec.pool.max_lifetime)?,
            idle_timeout: positive("spec.pool.idleTimeout", &spec.pool.idle_timeout)?,
            fetch_size: count("spec.pool.fetchSize", spec.pool.fetch_size)?,
        };
        let health = HealthSettings {
            interval: positive("spec.healthCheck.interval", &spec.health_check.interval)?,
            timeout: positive("spec.healthCheck.timeout", &spec.health_check.timeout)?,
            failure_threshold: count(
                "spec.healthCheck.failureThreshold",
                spec.health_check.failure_threshold,
            )? as u32,
        };
        let retry = RetrySettings {
            initial_delay: positive("spec.retry.initialDelay", &spec.retry.initial_delay)?,
            max_delay: positive("spec.retry.maxDelay", &spec.retry.max_delay)?,
        };
        if retry.max_delay < retry.initial_delay {
            return Err(SpecError::RetryBoundsInverted);
        }
        Ok(Self {
            engine: spec.engine,
            uri: spec.uri.clone(),
            endpoint,
            tls,
            database: spec.database.clone().filter(|d| !d.is_empty()),
            pool,
            health,
            retry,
        })
    }
}

fn parse_uri(spec: &DatabaseConnectionSpec) -> Result<(String, TlsMode), SpecError> {
    let url = Url::parse(&spec.uri).map_err(|e| SpecError::MalformedUri {
        uri: spec.uri.clone(),
        detail: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SpecError::CredentialsInUri);
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| SpecError::MissingHost(spec.uri.clone()))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(SpecError::UnexpectedUriParts);
    }
    let scheme = url.scheme();
    let scheme_tls = match (spec.engine, scheme) {
        (Engine::Neo4j, "bolt" | "neo4j") => TlsMode::Plain,
        (Engine::Neo4j, "bolt+s" | "neo4j+s") => TlsMode::Verified(None),
        (Engine::Neo4j, "bolt+ssc" | "neo4j+ssc") => TlsMode::InsecureSkipVerify,
        (engine, other) => {
            return Err(SpecError::UnsupportedScheme {
                scheme: other.to_owned(),
                engine: engine.as_str(),
                supported: NEO4J_SCHEMES,
            });
        }
    };
    let tls = match (&spec.tls, scheme_tls) {
        (None, mode) => mode,
        (Some(tls), TlsMode::Verified(_)) => match (&tls.ca_secret_ref, tls.insecure_skip_verify) {
            (Some(_), true) => return Err(SpecError::TlsConflict),
            (ca, false) => TlsMode::Verified(ca.clone()),
            (None, true) => TlsMode::InsecureSkipVerify,
        },
        (Some(_), _) => return Err(SpecError::TlsWithoutTlsScheme(scheme.to_owned())),
    };
    let port = url.port().unwrap_or(default_port(spec.engine));
    Ok((format!("{host}:{port}"), tls))
}

fn default_port(engine: Engine) -> u16 {
    match engine {
        Engine::Neo4j => 7687,
    }
}

fn positive(field: &'static str, value: &crate::duration::Duration) -> Result<Duration, SpecError> {
    let parsed = value
        .parse()
        .map_err(|source| SpecError::BadDuration { field, source })?;
    if parsed.is_zero() {
        return Err(SpecError::ZeroDuration { field });
    }
    Ok(parsed)
}

fn count(field: &'static str, value: u32) -> Result<usize, SpecError> {
    if value == 0 {
        return Err(SpecError::ZeroCount { field });
    }
    Ok(value as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::TlsSpec, fixtures};

    fn spec_with_uri(uri: &str) -> DatabaseConnectionSpec {
        let mut spec = fixtures::neo4j_spec("creds");
        spec.uri = uri.into();
        spec
    }

    #[test]
    fn accepts_the_neo4j_schemes_and_derives_tls_mode() {
        let cases = [
            ("bolt://db:7687", TlsMode::Plain),
            ("neo4j://db", TlsMode::Plain),
            ("bolt+s://db:7687", TlsMode::Verified(None)),
            ("neo4j+ssc://db:7687", TlsMode::InsecureSkipVerify),
        ];
        for (uri, tls) in cases {
            let settings = ConnectionSettings::from_spec(&spec_with_uri(uri)).unwrap();
            assert_eq!(settings.tls, tls, "{uri}");
        }
    }

    #[test]
    fn endpoint_has_the_default_port_when_none_is_given() {
        let settings = ConnectionSettings::from_spec(&spec_with_uri("bolt://graph.db")).unwrap();
        assert_eq!(settings.endpoint, "graph.db:7687");
    }

    #[test]
    fn rejects_bad_uris_with_specific_errors() {
        let err = |uri: &str| ConnectionSettings::from_spec(&spec_with_uri(uri)).unwrap_err();
        assert!(matches!(
            err("http://db:80"),
            SpecError::UnsupportedScheme { .. }
        ));
        assert_eq!(err("bolt://neo4j:pw@db:7687"), SpecError::CredentialsInUri);
        assert!(matches!(err("not a uri"), SpecError::MalformedUri { .. }));
        assert_eq!(err("bolt://db:7687/neo4j"), SpecError::UnexpectedUriParts);
        assert_eq!(err("bolt://db:7687?x=1"), SpecError::UnexpectedUriParts);
    }

    #[test]
    fn error_messages_never_echo_a_password_from_the_uri() {
        let message = ConnectionSettings::from_spec(&spec_with_uri("bolt://u:hunter2@db"))
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn tls_settings_combine_with_the_scheme() {
        let mut spec = spec_with_uri("bolt+s://db:7687");
        spec.tls = Some(TlsSpec {
            ca_secret_ref: None,
            insecure_skip_verify: true,
        });
        let settings = ConnectionSettings::from_spec(&spec).unwrap();
        assert_eq!(settings.tls, TlsMode::InsecureSkipVerify);

        spec.uri = "bolt://db:7687".into();
        assert_eq!(
            ConnectionSettings::from_spec(&spec).unwrap_err(),
            SpecError::TlsWithoutTlsScheme("bolt".into())
        );
    }

    #[test]
    fn rejects_zero_and_malformed_durations() {
        let mut spec = spec_with_uri("bolt://db");
        spec.health_check.interval = crate::duration::Duration::new("0s");
        assert_eq!(
            ConnectionSettings::from_spec(&spec).unwrap_err(),
            SpecError::ZeroDuration {
                field: "spec.healthCheck.interval"
            }
        );
        spec.health_check.interval = crate::duration::Duration::new("soon");
        let message = ConnectionSettings::from_spec(&spec)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("spec.healthCheck.interval: \"soon\" is not a duration"),
            "{message}"
        );
    }

    #[test]
    fn rejects_inverted_retry_bounds() {
        let mut spec = spec_with_uri("bolt://db");
        spec.retry.initial_delay = crate::duration::Duration::new("30s");
        spec.retry.max_delay = crate::duration::Duration::new("1s");
        assert_eq!(
            ConnectionSettings::from_spec(&spec).unwrap_err(),
            SpecError::RetryBoundsInverted
        );
    }
}
