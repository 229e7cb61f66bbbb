//! Neo4j through `neo4rs` (Bolt 4.4).
//!
//! Every statement runs in an explicit transaction: neo4rs retries `Graph::run`/`execute` on
//! transient server errors for up to a minute, which would turn a server's answer into a bare
//! `Timeout` at the probe's deadline. Transactions are never retried, so the server's code
//! reaches status as it is.

use std::{path::PathBuf, sync::Arc};

use futures::{FutureExt, future::BoxFuture};
use neo4rs::{
    ConfigBuilder, Graph, Neo4jClientErrorKind, Neo4jErrorKind, Neo4jSecurityErrorKind, Row, query,
};

use url::Url;

use super::{
    Descriptor, EngineError, Pool, SchemaOps,
    descriptor::{Login, UriOptions, UriShape},
    sections,
};
use crate::{
    api::ServerInfo,
    credentials::Credentials,
    schema::Existing,
    settings::{ConnectionSettings, SpecError, TlsMode},
};

pub static ENGINE: Descriptor = Descriptor {
    name: "neo4j",
    product: "Neo4j 5",
    uri: UriShape {
        // Not the neo4j:// schemes: they ask for cluster routing, which neo4rs 0.9 has only
        // behind its unstable-bolt-protocol-impl-v2 feature (a different Bolt implementation).
        // Without it the driver talks to the seed host alone, so Ready would claim a routing
        // the operator never checked.
        schemes: &["bolt", "bolt+s", "bolt+ssc"],
        default_port: 7687,
        several_hosts: false,
        example: "bolt://host:7687",
        pattern: concat!(
            r"^bolt(\+s|\+ssc)?://",
            crate::uri_host_port_pattern!(),
            "/?$"
        ),
        message: "for engine neo4j, uri must look like bolt://host:7687 (schemes bolt, bolt+s, bolt+ssc) with no credentials, path or query; neo4j:// (cluster routing) is not supported: write bolt:// to probe one server",
        verifying: r"^bolt\+s://",
        tls_applies: "to the bolt+s:// scheme (bolt+ssc:// skips verification already)",
        parse: parse_uri,
    },
    login: Login::Required,
    sections: &[
        &sections::DATABASE,
        &sections::SCHEMA_CONSTRAINTS,
        &sections::SCHEMA_INDEXES,
    ],
    rules: &[],
    reasons: &[],
    open,
};

/// The scheme says the TLS mode; the URI names the server and nothing else.
fn parse_uri(url: &Url) -> Result<UriOptions, SpecError> {
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(SpecError::UnexpectedUriParts(
            "spec.uri must name only the server (no path, query or fragment); put the database in spec.database",
        ));
    }
    let tls = match url.scheme() {
        "bolt+s" => TlsMode::Verified(None),
        "bolt+ssc" => TlsMode::InsecureSkipVerify,
        _ => TlsMode::Plain,
    };
    Ok(UriOptions {
        tls,
        verify_hostname: true,
        database: None,
    })
}

const NEEDS: &str = "The login works but lacks a privilege: Neo4j needs ACCESS on the database for probes, and INDEX MANAGEMENT and CONSTRAINT MANAGEMENT (plus SHOW INDEX and SHOW CONSTRAINT) for spec.schema. Grant it to the user or remove what needs it from the spec.";

struct Neo4jPool {
    graph: Graph,
    target: Target,
    /// Keeps the CA file for as long as the pool may open connections with it.
    _ca_file: Option<CaFile>,
}

fn open(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Arc<dyn Pool>, EngineError> {
    let login = super::required_login(credentials)?;
    let pool = &settings.pool;
    let mut config = ConfigBuilder::default()
        .uri(driver_uri(settings))
        .user(login.username.clone())
        .password(login.password.expose().to_owned())
        .max_connections(pool.max_size)
        .fetch_size(pool.fetch_size)
        .connection_timeout(pool.connection_timeout)
        // neo4rs wires its `max_lifetime` to the pool's wait timeout, which is what
        // acquisitionTimeout means; true lifetime and idle limits are enforced by the
        // reconciler, which renews the pool (see `state::PoolEntry::expired`).
        .max_lifetime(Some(pool.acquisition_timeout));
    if let Some(db) = &settings.database {
        config = config.db(db.as_str());
    }
    let mut ca_file = None;
    match &settings.tls {
        TlsMode::Plain => {}
        TlsMode::InsecureSkipVerify => config = config.skip_ssl_validation(),
        TlsMode::Verified(None) => {}
        TlsMode::Verified(Some(_)) => {
            let pem = credentials.ca_pem.as_deref().ok_or_else(|| {
                EngineError::Tls(
                    "the CA bundle from spec.tls.caSecretRef was not loaded".into(),
                )
            })?;
            let file = CaFile::write(pem).map_err(|e| {
                EngineError::Tls(format!("cannot store the CA bundle for the driver: {e}"))
            })?;
            config = config.with_client_certificate(&file.path);
            ca_file = Some(file);
        }
    }
    let config = config
        .build()
        .map_err(|e| EngineError::Configuration(e.to_string()))?;
    let target = Target {
        endpoint: settings.endpoint.clone(),
        user: login.username.clone(),
        database: settings.database.clone(),
        connection_timeout: pool.connection_timeout,
    };
    let graph = Graph::connect(config).map_err(|e| target.classify(e))?;
    Ok(Arc::new(Neo4jPool {
        graph,
        target,
        _ca_file: ca_file,
    }))
}

/// With TLS verification off, neo4rs wants the `+ssc` scheme or `skip_ssl_validation`; with a
/// custom CA it wants the plain `+s` scheme. The URI was validated, so the rewrite is safe.
fn driver_uri(settings: &ConnectionSettings) -> String {
    match settings.tls {
        TlsMode::InsecureSkipVerify => settings.uri.replacen("+s://", "+ssc://", 1),
        _ => settings.uri.clone(),
    }
}

impl Pool for Neo4jPool {
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move { self.run("RETURN 1 AS ok").await }.boxed()
    }

    fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>> {
        async move {
            let rows = self
                .rows(
                    "CALL dbms.components() YIELD name, versions, edition \
                     RETURN name, versions[0] AS version, edition",
                )
                .await?;
            let row = rows.first().ok_or_else(|| {
                EngineError::QueryFailed("dbms.components() returned no rows".into())
            })?;
            let field = |key: &str| row.get::<String>(key).unwrap_or_default();
            Ok(ServerInfo {
                agent: field("name"),
                version: field("version"),
                edition: field("edition"),
            })
        }
        .boxed()
    }

    fn schema(&self) -> Option<&dyn SchemaOps> {
        Some(self)
    }
}

impl Neo4jPool {
    /// Runs one statement in its own transaction and returns its rows.
    async fn rows(&self, statement: &str) -> Result<Vec<Row>, EngineError> {
        let classify = |e| self.target.classify(e);
        let mut txn = self.graph.start_txn().await.map_err(classify)?;
        let mut stream = txn.execute(query(statement)).await.map_err(classify)?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next(txn.handle()).await.map_err(classify)? {
            rows.push(row);
        }
        txn.commit().await.map_err(classify)?;
        Ok(rows)
    }

    /// Runs one statement in its own transaction for its outcome alone: RUN goes out with
    /// DISCARD, three round trips where [`Self::rows`] makes four (RUN, then PULL).
    async fn run(&self, statement: &str) -> Result<(), EngineError> {
        let classify = |e| self.target.classify(e);
        let mut txn = self.graph.start_txn().await.map_err(classify)?;
        txn.run(query(statement)).await.map_err(classify)?;
        txn.commit().await.map_err(classify)
    }
}

impl SchemaOps for Neo4jPool {
    fn existing(&self) -> BoxFuture<'_, Result<Vec<Existing>, EngineError>> {
        async move {
            let mut found = Vec::new();
            let constraints = "SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties \
                               RETURN name, type, entityType, labelsOrTypes, properties, 'ONLINE' AS state, 100.0 AS populationPercent, true AS isConstraint";
            let indexes = "SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, state, populationPercent, owningConstraint \
                           WHERE owningConstraint IS NULL AND type <> 'LOOKUP' \
                           RETURN name, type, entityType, labelsOrTypes, properties, state, populationPercent, false AS isConstraint";
            for statement in [constraints, indexes] {
                let rows = super::schema_statement(&self.target.endpoint, self.rows(statement));
                for row in rows.await? {
                    found.push(Existing {
                        name: row.get("name").unwrap_or_default(),
                        is_constraint: row.get("isConstraint").unwrap_or_default(),
                        type_: row.get("type").unwrap_or_default(),
                        entity: row.get("entityType").unwrap_or_default(),
                        labels_or_types: row.get::<Option<Vec<String>>>("labelsOrTypes").ok().flatten().unwrap_or_default(),
                        properties: row.get::<Option<Vec<String>>>("properties").ok().flatten().unwrap_or_default(),
                        state: row.get("state").unwrap_or_default(),
                        population_percent: row.get("populationPercent").unwrap_or_default(),
                    });
                }
            }
            Ok(found)
        }
        .boxed()
    }

    fn execute(&self, statement: String) -> BoxFuture<'_, Result<(), EngineError>> {
        async move {
            super::schema_statement(&self.target.endpoint, self.run(&statement)).await
        }
        .boxed()
    }
}

/// What a failure message names: never the password.
struct Target {
    endpoint: String,
    user: String,
    database: Option<String>,
    connection_timeout: std::time::Duration,
}

impl Target {
    fn classify(&self, error: neo4rs::Error) -> EngineError {
        use neo4rs::Error as E;
        let unreachable = |detail: String| EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        };
        match error {
            E::AuthenticationError(detail) => EngineError::AuthenticationFailed {
                user: self.user.clone(),
                detail,
            },
            E::IOError { detail } => {
                if detail.to_string().to_lowercase().contains("certificate") {
                    EngineError::Tls(detail.to_string())
                } else {
                    unreachable(detail.to_string())
                }
            }
            E::ConnectionTimedOut => EngineError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.connection_timeout,
            },
            E::InvalidDnsName(name) => unreachable(format!("cannot resolve {name:?}")),
            E::UnsupportedScheme(s) => {
                EngineError::Configuration(format!("unsupported scheme {s:?}"))
            }
            E::UrlParseError(e) => EngineError::Configuration(e.to_string()),
            E::ConnectionError => unreachable("the connection was closed by the server".into()),
            E::Neo4j(e) => self.server_error(e.kind(), e.code(), e.message()),
            other => EngineError::QueryFailed(other.to_string()),
        }
    }
}

impl Target {
    /// An error the server sent, by its code: the reason keeps the server's own words.
    fn server_error(&self, kind: Neo4jErrorKind, code: &str, message: &str) -> EngineError {
        let detail = format!("{code}: {message}");
        match kind {
            Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(
                Neo4jSecurityErrorKind::Authentication | Neo4jSecurityErrorKind::Other,
            )) => EngineError::AuthenticationFailed {
                user: self.user.clone(),
                detail,
            },
            Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(
                Neo4jSecurityErrorKind::Forbidden,
            )) => EngineError::PermissionDenied {
                user: self.user.clone(),
                detail,
                needs: NEEDS,
            },
            Neo4jErrorKind::Client(Neo4jClientErrorKind::FatalDiscovery) => {
                EngineError::DatabaseNotFound {
                    database: self.database.clone().unwrap_or_else(|| "(default)".into()),
                }
            }
            Neo4jErrorKind::Transient => EngineError::Transient(detail),
            _ => EngineError::QueryFailed(detail),
        }
    }
}

/// neo4rs reads a custom CA only from a file. The bundle is public material (no key); it is
/// written to a private temporary file that is removed when the pool is dropped.
struct CaFile {
    path: PathBuf,
}

impl CaFile {
    fn write(pem: &[u8]) -> std::io::Result<Self> {
        use std::io::Write;
        let dir = std::env::temp_dir().join("dbconn-operator");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("ca-{}.pem", rand::random::<u64>()));
        let mut file = std::fs::File::create_new(&path)?;
        file.write_all(pem)?;
        Ok(Self { path })
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            endpoint: "127.0.0.1:7687".into(),
            user: "app".into(),
            database: None,
            connection_timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn server_errors_keep_their_code_and_get_their_own_reason() {
        let transient = target().server_error(
            Neo4jErrorKind::Transient,
            "Neo.TransientError.General.MemoryPoolOutOfMemoryError",
            "out of memory",
        );
        assert_eq!(transient.reason(), "TransientError");
        assert!(
            transient.to_string().contains("MemoryPoolOutOfMemoryError"),
            "{transient}"
        );
        let forbidden = target().server_error(
            Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(
                Neo4jSecurityErrorKind::Forbidden,
            )),
            "Neo.ClientError.Security.Forbidden",
            "Schema operations are not allowed for user 'app' with roles [reader].",
        );
        assert_eq!(forbidden.reason(), "PermissionDenied");
        assert!(
            forbidden
                .to_string()
                .contains("Schema operations are not allowed")
        );
        assert!(forbidden.hint().contains("CONSTRAINT MANAGEMENT"));
        let refused = target().server_error(
            Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(
                Neo4jSecurityErrorKind::Authentication,
            )),
            "Neo.ClientError.Security.Unauthorized",
            "The client is unauthorized due to authentication failure.",
        );
        assert_eq!(refused.reason(), "AuthenticationFailed");
    }
}
