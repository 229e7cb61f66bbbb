//! Checking a `DatabaseConnectionSpec` into the settings an engine uses. Pure: no I/O.
//! The CRD's schema and CEL rules reject most mistakes at apply time; this is the second line,
//! for objects written before a rule existed or sent past the apiserver's checks.

use std::time::Duration;

use url::Url;

use crate::{
    api::{DatabaseConnection, DatabaseConnectionSpec},
    engine::{self, Descriptor, descriptor::Login},
    settings::{
        ConnectionSettings, HealthSettings, PoolSettings, RetrySettings, SESSIONS_AT_ONCE,
        SpecError, TlsMode,
    },
};

impl ConnectionSettings {
    pub fn from_spec(spec: &DatabaseConnectionSpec) -> Result<Self, SpecError> {
        let engine = engine::named(&spec.engine).ok_or_else(|| SpecError::UnknownEngine {
            engine: spec.engine.clone(),
            supported: engine::or_list(&engine::names()),
        })?;
        if spec.credentials.is_none() && engine.login == Login::Required {
            return Err(SpecError::CredentialsMissing(engine.name));
        }
        let uri = parse_uri(engine, spec)?;
        let database = match (
            spec.database.clone().filter(|d| !d.is_empty()),
            uri.database,
        ) {
            (Some(in_spec), Some(in_uri)) if in_spec != in_uri => {
                return Err(SpecError::DatabaseConflict { in_spec, in_uri });
            }
            (in_spec, in_uri) => in_spec.or(in_uri),
        };
        let pool = PoolSettings {
            max_size: count("spec.pool.maxSize", spec.pool.max_size)?.min(SESSIONS_AT_ONCE),
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
            max_replication_lag: positive(
                "spec.healthCheck.maxReplicationLag",
                &spec.health_check.max_replication_lag,
            )?,
        };
        let retry = RetrySettings {
            initial_delay: positive("spec.retry.initialDelay", &spec.retry.initial_delay)?,
            max_delay: positive("spec.retry.maxDelay", &spec.retry.max_delay)?,
        };
        if retry.max_delay < retry.initial_delay {
            return Err(SpecError::RetryBoundsInverted);
        }
        Ok(Self {
            engine,
            uri: spec.uri.clone(),
            endpoint: uri
                .hosts
                .iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect::<Vec<_>>()
                .join(","),
            host: uri.hosts[0].0.clone(),
            port: uri.hosts[0].1,
            hosts: uri.hosts,
            tls: uri.tls,
            verify_hostname: uri.verify_hostname,
            database,
            pool,
            http: spec.http.clone(),
            health,
            retry,
        })
    }
}

/// Everything the operator checks in code before it reads a Secret: references stay in the
/// connection's namespace, the binding Secret is none of the Secrets it reads, and the spec
/// parses into settings. `validate` runs the same checks offline.
pub fn connection(
    obj: &DatabaseConnection,
    namespace: Option<&str>,
) -> Result<ConnectionSettings, SpecError> {
    check_secret_namespaces(&obj.spec, namespace)?;
    check_binding_name(obj)?;
    ConnectionSettings::from_spec(&obj.spec)
}

/// The binding Secret, named explicitly or by default, must not be a Secret the connection
/// reads: writing it would overwrite the login or the CA (the CRD refuses the explicit case).
fn check_binding_name(obj: &DatabaseConnection) -> Result<(), SpecError> {
    let Some(name) = obj.binding_secret_name() else {
        return Ok(());
    };
    let ca = obj
        .spec
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_secret_ref.as_ref());
    let login = obj
        .spec
        .credentials
        .as_ref()
        .map(|c| c.secret_ref.name.as_str());
    let role = if login == Some(name.as_str()) {
        "credentials"
    } else if ca.is_some_and(|ca| ca.name == name) {
        "CA"
    } else if obj.spec.client_cert_secret() == Some(name.as_str()) {
        "client certificate"
    } else {
        return Ok(());
    };
    Err(SpecError::BindingNameTaken { name, role })
}

/// Refuses a Secret reference into another namespace: a user who may create DatabaseConnections
/// in one namespace must not be able to make the operator read Secrets of another.
/// `namespace` is the connection's own; `None` where it is not known (an offline check), and then
/// any explicit namespace is refused, since only an equal one would pass.
pub fn check_secret_namespaces(
    spec: &DatabaseConnectionSpec,
    namespace: Option<&str>,
) -> Result<(), SpecError> {
    let references = [
        (
            "spec.credentials.secretRef.namespace",
            spec.credentials
                .as_ref()
                .and_then(|c| c.secret_ref.namespace.as_deref()),
        ),
        (
            "spec.tls.caSecretRef.namespace",
            spec.tls
                .as_ref()
                .and_then(|tls| tls.ca_secret_ref.as_ref())
                .and_then(|ca| ca.namespace.as_deref()),
        ),
    ];
    for (field, referenced) in references {
        let Some(referenced) = referenced else {
            continue;
        };
        if Some(referenced) != namespace {
            return Err(SpecError::SecretRefCrossNamespace {
                field,
                referenced: referenced.to_owned(),
                own: namespace.map(|ns| format!(" ({ns:?})")).unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// What `spec.uri` says, validated for its engine.
struct UriParts {
    /// Every host with its port, in the order written; at least one.
    hosts: Vec<(String, u16)>,
    tls: TlsMode,
    verify_hostname: bool,
    database: Option<String>,
}

/// What every engine's URI shares (a scheme of its own, a host, an optional port, no login),
/// then what follows the port as the engine reads it, then `spec.tls` on top of the mode.
fn parse_uri(engine: &Descriptor, spec: &DatabaseConnectionSpec) -> Result<UriParts, SpecError> {
    let malformed = |detail: String| SpecError::MalformedUri {
        uri: mask_userinfo(&spec.uri),
        detail,
        example: engine.uri.example,
    };
    // The URL parser reads `\` as `/` in http(s) URIs, so `http://a\:pw@b` would name host `a`
    // and carry the rest in its path; no engine's URI needs one.
    if spec.uri.contains('\\') {
        return Err(malformed("it contains a backslash".into()));
    }
    // `h1:5432,h2:5433`: the URL parser reads one host, so the others are read one by one.
    let (first, others) = split_hosts(&spec.uri);
    if !others.is_empty() && !engine.uri.several_hosts {
        return Err(malformed(format!(
            "engine {} takes one host; a comma separates several hosts only for postgres",
            engine.name
        )));
    }
    let url = Url::parse(&first).map_err(|e| malformed(e.to_string()))?;
    let host_port = |url: &Url| -> Result<(String, u16), SpecError> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SpecError::CredentialsInUri);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SpecError::MissingHost(mask_userinfo(&spec.uri)))?
            .to_owned();
        // A scheme's well-known port (https: 443) where the URL parser knows one.
        let port = url
            .port_or_known_default()
            .unwrap_or(engine.uri.default_port);
        Ok((host, port))
    };
    let mut hosts = vec![host_port(&url)?];
    for other in others {
        let other = Url::parse(&format!("{}://{other}", url.scheme()))
            .map_err(|e| malformed(format!("host {:?}: {e}", mask_userinfo(other))))?;
        if other.path() != "" || other.query().is_some() || other.fragment().is_some() {
            return Err(malformed("a listed host must be host[:port]".into()));
        }
        hosts.push(host_port(&other)?);
    }
    if !engine.uri.schemes.contains(&url.scheme()) {
        return Err(SpecError::UnsupportedScheme {
            scheme: url.scheme().to_owned(),
            engine: engine.name,
            supported: engine.scheme_list(),
        });
    }
    let options = (engine.uri.parse)(&url)?;
    let tls = match (&spec.tls, options.tls) {
        (None, mode) => mode,
        (Some(tls), TlsMode::Verified(_)) => match (&tls.ca_secret_ref, tls.insecure_skip_verify) {
            (Some(_), true) => return Err(SpecError::TlsConflict),
            (ca, false) => TlsMode::Verified(ca.clone()),
            (None, true) => TlsMode::InsecureSkipVerify,
        },
        (Some(_), _) => return Err(SpecError::TlsNotApplicable(engine.uri.tls_applies)),
    };
    Ok(UriParts {
        hosts,
        tls,
        verify_hostname: options.verify_hostname,
        database: options.database,
    })
}

/// The URI with its first host alone, and the other hosts of a comma-separated list.
fn split_hosts(uri: &str) -> (String, Vec<&str>) {
    let Some(start) = uri.find("://").map(|i| i + 3) else {
        return (uri.to_owned(), Vec::new());
    };
    let end = uri[start..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |i| start + i);
    let mut hosts = uri[start..end].split(',');
    let first = hosts.next().unwrap_or_default();
    let others: Vec<&str> = hosts.collect();
    (format!("{}{first}{}", &uri[..start], &uri[end..]), others)
}

/// A URI for an error message: anything between the scheme and the last `@` is masked, also
/// when the URL parser would not read it as a login (`bolt:user:pw@host` has no host).
fn mask_userinfo(uri: &str) -> String {
    let Some(at) = uri.rfind('@') else {
        return uri.to_owned();
    };
    let start = match uri.find("://") {
        Some(i) => i + 3,
        None => uri.find(':').map_or(0, |i| i + 1),
    };
    let start = if start <= at { start } else { 0 };
    format!("{}***{}", &uri[..start], &uri[at..])
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
    use crate::{
        api::{CaSecretRef, TlsSpec},
        fixtures,
    };

    fn spec_with_uri(uri: &str) -> DatabaseConnectionSpec {
        let mut spec = fixtures::neo4j_spec("creds");
        spec.uri = uri.into();
        spec
    }

    #[test]
    fn accepts_the_neo4j_schemes_and_derives_tls_mode() {
        let cases = [
            ("bolt://db:7687", TlsMode::Plain),
            ("bolt://db", TlsMode::Plain),
            ("bolt+s://db:7687", TlsMode::Verified(None)),
            ("bolt+ssc://db:7687", TlsMode::InsecureSkipVerify),
        ];
        for (uri, tls) in cases {
            let settings = ConnectionSettings::from_spec(&spec_with_uri(uri)).unwrap();
            assert_eq!(settings.tls, tls, "{uri}");
        }
    }

    #[test]
    fn postgres_may_list_hosts_and_other_engines_may_not() {
        let postgres = |uri: &str| {
            let mut spec = fixtures::postgres_spec("creds");
            spec.uri = uri.into();
            ConnectionSettings::from_spec(&spec)
        };
        let listed =
            postgres("postgres://a:5433,b,c:5434/app?target_session_attrs=read-write").unwrap();
        assert_eq!(
            listed.hosts,
            [("a".into(), 5433), ("b".into(), 5432), ("c".into(), 5434)]
        );
        assert_eq!(listed.endpoint, "a:5433,b:5432,c:5434");
        assert_eq!(listed.database.as_deref(), Some("app"));
        assert_eq!(
            postgres("postgres://a,u:hunter2@b/app"),
            Err(SpecError::CredentialsInUri)
        );
        assert!(postgres("postgres://a,b/app?target_session_attrs=master").is_err());
        let error = ConnectionSettings::from_spec(&spec_with_uri("bolt://a,b:7687")).unwrap_err();
        assert!(error.to_string().contains("takes one host"), "{error}");
    }

    #[test]
    fn pools_stop_at_what_the_operator_uses_at_once() {
        let max_size = |n| {
            let mut spec = fixtures::postgres_spec("creds");
            spec.pool.max_size = n;
            ConnectionSettings::from_spec(&spec).map(|s| s.pool.max_size)
        };
        assert_eq!(max_size(50), Ok(SESSIONS_AT_ONCE), "the default, 50");
        assert_eq!(max_size(1), Ok(1), "a smaller limit is kept");
        assert!(max_size(0).is_err());
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
        // Routing schemes: the driver would talk to the seed host alone.
        let routing = err("neo4j://db:7687");
        assert!(matches!(routing, SpecError::UnsupportedScheme { .. }));
        assert!(
            routing.to_string().contains("use one of bolt://"),
            "{routing}"
        );
        assert!(matches!(err("not a uri"), SpecError::MalformedUri { .. }));
        assert!(matches!(
            err("bolt://db:7687/neo4j"),
            SpecError::UnexpectedUriParts(_)
        ));
        assert!(matches!(
            err("bolt://db:7687?x=1"),
            SpecError::UnexpectedUriParts(_)
        ));
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
            client_cert_secret_ref: None,
        });
        let settings = ConnectionSettings::from_spec(&spec).unwrap();
        assert_eq!(settings.tls, TlsMode::InsecureSkipVerify);

        spec.uri = "bolt://db:7687".into();
        let refused = ConnectionSettings::from_spec(&spec).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "spec.tls applies only to the bolt+s:// scheme (bolt+ssc:// skips verification already)"
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

    fn postgres(uri: &str) -> Result<ConnectionSettings, SpecError> {
        let mut spec = fixtures::postgres_spec("creds");
        spec.uri = uri.into();
        ConnectionSettings::from_spec(&spec)
    }

    #[test]
    fn postgres_uris_give_host_port_and_database() {
        let settings = postgres("postgres://db.example/app").unwrap();
        assert_eq!(
            (
                settings.host.as_str(),
                settings.port,
                settings.endpoint.as_str()
            ),
            ("db.example", 5432, "db.example:5432")
        );
        assert_eq!(settings.database.as_deref(), Some("app"));
        let settings = postgres("postgresql://10.0.0.7:6432/").unwrap();
        assert_eq!((settings.port, settings.database), (6432, None));
    }

    #[test]
    fn sslmode_maps_to_tls_mode() {
        let cases = [
            ("", TlsMode::Plain, true),
            ("?sslmode=disable", TlsMode::Plain, true),
            ("?sslmode=require", TlsMode::InsecureSkipVerify, true),
            ("?sslmode=verify-ca", TlsMode::Verified(None), false),
            ("?sslmode=verify-full", TlsMode::Verified(None), true),
        ];
        for (query, tls, verify_hostname) in cases {
            let settings = postgres(&format!("postgres://db:5432/app{query}")).unwrap();
            assert_eq!(
                (settings.tls, settings.verify_hostname),
                (tls, verify_hostname),
                "{query}"
            );
        }
        for fallback in ["prefer", "allow"] {
            let err = postgres(&format!("postgres://db/app?sslmode={fallback}")).unwrap_err();
            assert!(err.to_string().contains("falls back silently"), "{err}");
        }
        assert_eq!(
            postgres("postgres://db/app?sslmode=on").unwrap_err(),
            SpecError::UnsupportedSslMode
        );
    }

    #[test]
    fn postgres_uris_carry_nothing_but_database_and_sslmode() {
        let err = |uri: &str| postgres(uri).unwrap_err();
        assert_eq!(err("postgres://app:pw@db/app"), SpecError::CredentialsInUri);
        for uri in [
            "postgres://db/app?password=hunter2",
            "postgres://db/app?sslmode=disable&sslmode=require",
            "postgres://db/app#x",
        ] {
            assert!(
                matches!(err(uri), SpecError::UnexpectedUriParts(_)),
                "{uri}"
            );
            assert!(!err(uri).to_string().contains("hunter2"));
        }
        assert_eq!(err("postgres://db/a/b"), SpecError::InvalidDatabaseInUri);
        assert_eq!(err("postgres://db/%20x"), SpecError::InvalidDatabaseInUri);
        assert!(matches!(
            err("bolt://db:7687"),
            SpecError::UnsupportedScheme {
                engine: "postgres",
                ..
            }
        ));
    }

    #[test]
    fn database_comes_from_the_uri_or_the_spec_but_not_two_different_ones() {
        let mut spec = fixtures::postgres_spec("creds");
        spec.uri = "postgres://db:5432".into();
        spec.database = Some("orders".into());
        let settings = ConnectionSettings::from_spec(&spec).unwrap();
        assert_eq!(settings.database.as_deref(), Some("orders"));

        spec.uri = "postgres://db:5432/orders".into();
        assert!(ConnectionSettings::from_spec(&spec).is_ok());

        spec.uri = "postgres://db:5432/billing".into();
        assert_eq!(
            ConnectionSettings::from_spec(&spec).unwrap_err(),
            SpecError::DatabaseConflict {
                in_spec: "orders".into(),
                in_uri: "billing".into()
            }
        );
    }

    #[test]
    fn postgres_tls_settings_need_a_verifying_sslmode() {
        let mut spec = fixtures::postgres_spec("creds");
        let ca = CaSecretRef {
            name: "pg-ca".into(),
            key: "ca.crt".into(),
            namespace: None,
        };
        spec.tls = Some(TlsSpec {
            ca_secret_ref: Some(ca.clone()),
            insecure_skip_verify: false,
            client_cert_secret_ref: None,
        });
        for mode in ["verify-ca", "verify-full"] {
            spec.uri = format!("postgres://db/app?sslmode={mode}");
            let settings = ConnectionSettings::from_spec(&spec).unwrap();
            assert_eq!(settings.tls, TlsMode::Verified(Some(ca.clone())), "{mode}");
        }
        for uri in ["postgres://db/app?sslmode=require", "postgres://db/app"] {
            spec.uri = uri.into();
            let refused = ConnectionSettings::from_spec(&spec).unwrap_err();
            assert!(
                refused.to_string().contains("sslmode=verify-ca"),
                "{uri}: {refused}"
            );
        }
    }

    #[test]
    fn malformed_uri_messages_mask_a_login() {
        let message = postgres("postgres://app:hunter2@db:99999/app")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("postgres://***@db:99999/app"), "{message}");
        assert!(message.contains("write it like postgres://"), "{message}");
    }

    #[test]
    fn secret_references_stay_in_the_connections_namespace() {
        let mut spec = fixtures::neo4j_spec("creds");
        assert_eq!(check_secret_namespaces(&spec, Some("team-a")), Ok(()));
        spec.credentials.as_mut().unwrap().secret_ref.namespace = Some("team-a".into());
        assert_eq!(check_secret_namespaces(&spec, Some("team-a")), Ok(()));
        let refused = check_secret_namespaces(&spec, Some("team-b")).unwrap_err();
        assert_eq!(refused.reason(), "SecretRefCrossNamespace");
        assert_eq!(
            refused.to_string(),
            "spec.credentials.secretRef.namespace \"team-a\" is refused: Secrets are read only from the DatabaseConnection's own namespace (\"team-b\"); copy the Secret there and remove spec.credentials.secretRef.namespace"
        );
        // Offline, the namespace is unknown: an explicit one cannot be shown to match.
        assert!(check_secret_namespaces(&spec, None).is_err());

        spec.credentials.as_mut().unwrap().secret_ref.namespace = None;
        spec.uri = "bolt+s://db:7687".into();
        spec.tls = Some(TlsSpec {
            ca_secret_ref: Some(CaSecretRef {
                name: "ca".into(),
                key: "ca.crt".into(),
                namespace: Some("kube-system".into()),
            }),
            insecure_skip_verify: false,
            client_cert_secret_ref: None,
        });
        let refused = check_secret_namespaces(&spec, Some("team-a")).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("spec.tls.caSecretRef.namespace"),
            "{refused}"
        );
    }

    #[test]
    fn a_uri_without_a_host_does_not_echo_a_login() {
        // Found by tests/fuzz_parsing.rs: MissingHost repeated the URI as written.
        for uri in [
            "bolt::hunter2@db",
            "bolt:/u:hunter2@db",
            "bolt:///u:hunter2@db",
        ] {
            let message = ConnectionSettings::from_spec(&spec_with_uri(uri))
                .unwrap_err()
                .to_string();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("***@db"), "{message}");
        }
        assert_eq!(mask_userinfo("x@bolt://db"), "***@bolt://db");
        assert_eq!(mask_userinfo("bolt://db"), "bolt://db");
    }

    #[test]
    fn a_login_is_required_where_the_engine_says_so() {
        let mut spec = spec_with_uri("bolt://db");
        spec.credentials = None;
        assert_eq!(
            ConnectionSettings::from_spec(&spec).unwrap_err(),
            SpecError::CredentialsMissing("neo4j")
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
