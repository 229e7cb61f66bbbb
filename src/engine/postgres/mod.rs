//! PostgreSQL through `deadpool-postgres` 0.14 over `tokio-postgres` 0.7, TLS by rustls.
//!
//! Why this pair and not sqlx:
//! - tokio-postgres is the maintained async driver of the rust-postgres project; its errors carry
//!   the server's SQLSTATE as a typed `SqlState`, which is what the reasons below are made from.
//! - deadpool-postgres is a thin, maintained pool whose knobs map one to one onto `spec.pool`:
//!   `max_size`, and `Timeouts { wait, create, recycle }` for acquisitionTimeout and
//!   connectionTimeout. sqlx would bring a query layer, macros, migrations and its own TLS and
//!   runtime feature matrix that a probe of two statements does not use.
//! - TLS plugs in as a `MakeTlsConnect`: tokio-postgres-rustls with the rustls + ring that kube
//!   already builds, so there is no OpenSSL and no second crypto provider (see `engine/tls.rs`).
//!
//! Pool lifetime and idle limits are enforced by the reconciler, which renews the whole pool
//! (`state::PoolEntry::expired`); `spec.pool.fetchSize` has no use here (probes read one row).

mod members;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use deadpool_postgres::{
    Connect, Manager, ManagerConfig, PoolError, RecyclingMethod, Runtime, TimeoutType, Timeouts,
};
use futures::{FutureExt, future::BoxFuture};
use tokio::task::JoinHandle;
use tokio_postgres::{
    NoTls, SimpleQueryMessage, Socket,
    config::SslMode,
    tls::{MakeTlsConnect, TlsConnect},
};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::Instrument;

use url::Url;

use members::{Seen, SessionAttrs};

use super::{
    Descriptor, EngineError, ExtensionOps, FailureClass, Member, Pool, PoolUsage, Reason,
    descriptor::{Login, UriOptions, UriShape},
    sections, sslmode, tls,
};
use crate::{
    api::ServerInfo,
    credentials::Credentials,
    settings::{ConnectionSettings, SpecError, TlsMode},
};

/// The CRD pattern for the `target_session_attrs=` parameter.
macro_rules! target_session_attrs_pattern {
    () => {
        r"target_session_attrs=(any|read-write|read-only|primary|standby|prefer-standby)"
    };
}
pub static ENGINE: Descriptor = Descriptor {
    name: "postgres",
    product: "PostgreSQL",
    uri: UriShape {
        schemes: &["postgres", "postgresql"],
        default_port: 5432,
        several_hosts: true,
        example: "postgres://host:5432/database?sslmode=verify-full",
        pattern: concat!(
            r"^postgres(ql)?://",
            crate::uri_host_port_pattern!(),
            "(,",
            crate::uri_host_port_pattern!(),
            ")*",
            crate::database_path_pattern!(),
            r"(\?(",
            crate::sslmode_pattern!(),
            "(&",
            target_session_attrs_pattern!(),
            ")?|",
            target_session_attrs_pattern!(),
            "(&",
            crate::sslmode_pattern!(),
            ")?))?$"
        ),
        message: "for engine postgres, uri must look like postgres://host:5432/database or postgres://host1:5432,host2:5432/database (scheme postgres or postgresql) with no credentials; the only query parameters allowed are sslmode=disable|require|verify-ca|verify-full and target_session_attrs=any|read-write|read-only|primary|standby|prefer-standby, each at most once",
        verifying: sslmode::VERIFYING,
        tls_applies: sslmode::TLS_APPLIES,
        parse: parse_uri,
    },
    login: Login::Required,
    sections: &[
        &sections::DATABASE,
        &sections::SCHEMA_EXTENSIONS,
        &sections::CLIENT_CERT,
    ],
    rules: &[],
    reasons: &[&NO_SUITABLE_MEMBER],
    open,
};

/// Several hosts answered, and none takes the sessions `target_session_attrs` asks for (a
/// primary is down and its standby not yet promoted).
pub static NO_SUITABLE_MEMBER: Reason = Reason {
    name: "NoSuitableMember",
    class: FailureClass::Transient,
    server_answered: true,
    hint: "The message lists what each host is. During a failover this clears once a standby is promoted; otherwise check target_session_attrs in spec.uri against the hosts' roles. Retrying with backoff.",
};

fn parse_uri(url: &Url) -> Result<UriOptions, SpecError> {
    // `target_session_attrs` is read where the pool opens; sslmode's reader sees the rest.
    SessionAttrs::from_uri(url)?;
    let mut rest = url.clone();
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "target_session_attrs")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if others.is_empty() {
        rest.set_query(None);
    } else {
        rest.query_pairs_mut().clear().extend_pairs(others);
    }
    sslmode::parse(
        &rest,
        "spec.uri for postgres may carry only a database path, ?sslmode=... and target_session_attrs=...; put the login in the Secret named by spec.credentials.secretRef and other settings in the spec",
    )
}

/// One pool per listed host: each probe asks every member what it is.
struct PostgresPool {
    members: Vec<MemberPool>,
    attrs: SessionAttrs,
    /// A member that does not answer within this counts as down, so the others' answers
    /// still arrive within the probe's timeout.
    member_deadline: Duration,
    /// The member sessions go to, and every member as the last probe found them.
    last: Mutex<(usize, Vec<Member>)>,
}

struct MemberPool {
    pool: deadpool_postgres::Pool,
    target: Target,
}

fn open(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Arc<dyn Pool>, EngineError> {
    let login = super::required_login(credentials)?;
    let tls = tls::client_config(settings, credentials)?;
    let members = settings
        .hosts
        .iter()
        .map(|(host, port)| member_pool(settings, login, host, *port, tls.clone()))
        .collect::<Result<_, _>>()?;
    let attrs = session_attrs(&settings.uri);
    Ok(Arc::new(PostgresPool {
        members,
        attrs,
        member_deadline: settings.health.timeout.mul_f64(0.8),
        last: Mutex::new((0, Vec::new())),
    }))
}

/// `target_session_attrs` from a URI `check` accepted (which may list several hosts).
fn session_attrs(uri: &str) -> SessionAttrs {
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    SessionAttrs::from_query(query).unwrap_or_default()
}

fn member_pool(
    settings: &ConnectionSettings,
    login: &crate::credentials::Login,
    host: &str,
    port: u16,
    tls: Option<rustls::ClientConfig>,
) -> Result<MemberPool, EngineError> {
    let limits = &settings.pool;
    let mut config = tokio_postgres::Config::new();
    config
        // An IPv6 literal comes out of the URI in brackets; the driver wants it bare.
        .host(host.trim_start_matches('[').trim_end_matches(']'))
        .port(port)
        .user(&login.username)
        .password(login.password.expose())
        .connect_timeout(limits.connection_timeout)
        .application_name("dbconn-operator")
        .ssl_mode(match settings.tls {
            TlsMode::Plain => SslMode::Disable,
            _ => SslMode::Require,
        });
    if let Some(db) = &settings.database {
        config.dbname(db);
    }
    // `Fast` recycling only checks that the connection is still open: the probe that follows
    // is itself the round trip that proves the server answers.
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        None => Manager::from_connect(config, SpannedConnect { tls: NoTls }, manager_config),
        Some(tls) => Manager::from_connect(
            config,
            SpannedConnect {
                tls: MakeRustlsConnect::new(tls),
            },
            manager_config,
        ),
    };
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(limits.max_size)
        .timeouts(Timeouts {
            wait: Some(limits.acquisition_timeout),
            create: Some(limits.connection_timeout),
            recycle: Some(limits.connection_timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| EngineError::Configuration(e.to_string()))?;
    let target = Target {
        endpoint: format!("{host}:{port}"),
        user: login.username.clone(),
        // PostgreSQL's default database is the one named like the user.
        database: settings
            .database
            .clone()
            .unwrap_or_else(|| login.username.clone()),
        connection_timeout: limits.connection_timeout,
        acquisition_timeout: limits.acquisition_timeout,
    };
    Ok(MemberPool { pool, target })
}

/// Opens connections as deadpool's own connector does, but runs each connection's background
/// task in the span of the reconcile that opened it: a driver error it logs then names the
/// DatabaseConnection (namespace and name), not only "db error".
struct SpannedConnect<T> {
    tls: T,
}

impl<T> Connect for SpannedConnect<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
    {
        let tls = self.tls.clone();
        let config = config.clone();
        let span = tracing::Span::current();
        async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(
                async move {
                    if let Err(error) = connection.await {
                        tracing::warn!(%error, "PostgreSQL connection ended with an error");
                    }
                }
                .instrument(span),
            );
            Ok((client, task))
        }
        .boxed()
    }
}

impl MemberPool {
    /// Runs one statement with the simple protocol (no prepare round trip) and returns the
    /// columns of its first row.
    async fn first_row(&self, sql: &str) -> Result<Vec<Option<String>>, EngineError> {
        let client = self.pool.get().await.map_err(|e| self.target.pool(e))?;
        let messages = client
            .simple_query(sql)
            .await
            .map_err(|e| self.target.driver(&e))?;
        Ok(messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .unwrap_or_default())
    }

    async fn first_value(&self, sql: &str) -> Result<Option<String>, EngineError> {
        Ok(self.first_row(sql).await?.into_iter().next().flatten())
    }

    async fn inspect(&self, deadline: Duration) -> Result<Seen, EngineError> {
        let row = tokio::time::timeout(deadline, self.first_row(members::INSPECT))
            .await
            .map_err(|_elapsed| EngineError::Timeout {
                endpoint: self.target.endpoint.clone(),
                timeout: deadline,
            })??;
        let column = |i: usize| row.get(i).and_then(|c| c.as_deref());
        Seen::from_row([column(0), column(1), column(2), column(3)]).ok_or_else(|| {
            EngineError::QueryFailed(format!("{} answered no role", self.target.endpoint))
        })
    }
}

impl PostgresPool {
    /// The member sessions go to, chosen by the last probe.
    fn serving(&self) -> &MemberPool {
        let index = self.last.lock().expect("member lock").0;
        &self.members[index]
    }

    /// Asks every member what it is, at once, and chooses the one sessions go to. One listed
    /// host is simply pinged: there is nothing to choose and no member to report.
    async fn probe(&self) -> Result<(), EngineError> {
        if let [only] = self.members.as_slice() {
            return only.first_value("SELECT 1").await.map(drop);
        }
        let answers: Vec<_> = futures::future::join_all(self.members.iter().map(|member| async {
            (
                member.target.endpoint.clone(),
                member.inspect(self.member_deadline).await,
            )
        }))
        .await;
        let chosen = members::choose(self.attrs, &answers);
        let report = members::report(&answers, chosen.as_ref().ok().copied());
        let mut last = self.last.lock().expect("member lock");
        *last = (chosen.as_ref().copied().unwrap_or(last.0), report);
        chosen.map(drop)
    }
}

impl Pool for PostgresPool {
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        self.probe().boxed()
    }

    fn extensions(&self) -> Option<&dyn ExtensionOps> {
        Some(self)
    }

    fn usage(&self) -> Option<PoolUsage> {
        let mut usage = PoolUsage { open: 0, idle: 0 };
        for member in &self.members {
            let status = member.pool.status();
            usage.open += status.size;
            usage.idle += status.available;
        }
        Some(usage)
    }

    fn members(&self) -> Vec<Member> {
        self.last.lock().expect("member lock").1.clone()
    }

    fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>> {
        async move {
            self.probe().await?;
            let version = self
                .serving()
                .first_value("SHOW server_version")
                .await?
                .ok_or_else(|| {
                    EngineError::QueryFailed("SHOW server_version returned no row".into())
                })?;
            Ok(server_info(&version))
        }
        .boxed()
    }
}

impl ExtensionOps for PostgresPool {
    fn installed(&self) -> BoxFuture<'_, Result<Vec<String>, EngineError>> {
        let member = self.serving();
        let read = async move {
            let client = member.pool.get().await.map_err(|e| member.target.pool(e))?;
            let rows = client
                .query("SELECT extname FROM pg_extension", &[])
                .await
                .map_err(|e| member.target.driver(&e))?;
            Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
        };
        super::schema_statement(&member.target.endpoint, read).boxed()
    }

    fn install(&self, name: String) -> BoxFuture<'_, Result<(), EngineError>> {
        let member = self.serving();
        let install = async move {
            let client = member.pool.get().await.map_err(|e| member.target.pool(e))?;
            let statement = format!("CREATE EXTENSION IF NOT EXISTS {}", quote_identifier(&name));
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| member.target.driver(&e))
        };
        super::schema_statement(&member.target.endpoint, install).boxed()
    }
}

/// Quotes a PostgreSQL identifier: double quotes, embedded ones doubled.
pub fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `server_version` reads like `15.18 (Debian 15.18-0+deb12u1)`: the version, then the
/// distribution that built it, if any.
fn server_info(server_version: &str) -> ServerInfo {
    let (version, rest) = server_version
        .trim()
        .split_once(' ')
        .unwrap_or((server_version.trim(), ""));
    let edition = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_default();
    ServerInfo {
        agent: "PostgreSQL".into(),
        version: version.to_owned(),
        edition: edition.to_owned(),
    }
}

/// What the server's SQLSTATE says about a failed login or probe.
#[derive(Debug, PartialEq, Eq)]
enum SqlStateClass {
    /// 28P01 invalid_password, 28000 invalid_authorization_specification (no pg_hba.conf entry,
    /// role may not log in), 42501 insufficient_privilege (no CONNECT on the database).
    Login,
    /// 3D000 invalid_catalog_name.
    UnknownDatabase,
    /// Classes 08 (connection exception), 53 (insufficient resources, e.g. too many
    /// connections) and 57 (operator intervention, e.g. 57P03 cannot_connect_now while the
    /// server starts or stops).
    Transient,
    Other,
}

fn sqlstate_class(code: &str) -> SqlStateClass {
    match code {
        "28P01" | "28000" | "42501" => SqlStateClass::Login,
        "3D000" => SqlStateClass::UnknownDatabase,
        _ if ["08", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            SqlStateClass::Transient
        }
        _ => SqlStateClass::Other,
    }
}

/// What a failure message names: never the password (tokio-postgres and the server name the
/// user, the database and the SQLSTATE, not the password).
struct Target {
    endpoint: String,
    user: String,
    database: String,
    connection_timeout: Duration,
    acquisition_timeout: Duration,
}

impl Target {
    fn pool(&self, error: PoolError) -> EngineError {
        let timeout = |timeout| EngineError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout,
        };
        match error {
            PoolError::Backend(e) => self.driver(&e),
            PoolError::Timeout(TimeoutType::Wait) => timeout(self.acquisition_timeout),
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
                timeout(self.connection_timeout)
            }
            other => EngineError::QueryFailed(other.to_string()),
        }
    }

    fn driver(&self, error: &tokio_postgres::Error) -> EngineError {
        if let Some(db) = error.as_db_error() {
            let detail = format!("{} {}", db.code().code(), db.message());
            return match sqlstate_class(db.code().code()) {
                SqlStateClass::Login => EngineError::AuthenticationFailed {
                    user: self.user.clone(),
                    detail,
                },
                SqlStateClass::UnknownDatabase => EngineError::DatabaseNotFound {
                    database: self.database.clone(),
                },
                SqlStateClass::Transient => EngineError::Transient(detail),
                SqlStateClass::Other => EngineError::QueryFailed(detail),
            };
        }
        // tokio-postgres prints only its error kind (`error connecting to server`); the cause says
        // why (`Connection refused`, `server does not support TLS`, a certificate problem).
        let detail = super::with_causes(error);
        let unreachable = |detail| EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        };
        if error.is_closed() {
            return unreachable("the server closed the connection".into());
        }
        // tokio-postgres keeps its error kinds private; each kind's text is fixed (pinned =0.7.18).
        match driver_kind(&detail) {
            DriverKind::Tls => EngineError::Tls(detail),
            DriverKind::Timeout => EngineError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.connection_timeout,
            },
            DriverKind::Network => unreachable(detail),
            DriverKind::Authentication => EngineError::AuthenticationFailed {
                user: self.user.clone(),
                detail,
            },
            DriverKind::Configuration => EngineError::Configuration(detail),
            DriverKind::Other => EngineError::QueryFailed(detail),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum DriverKind {
    Tls,
    Timeout,
    Network,
    Authentication,
    Configuration,
    Other,
}

/// The kind of a tokio-postgres error that carries no SQLSTATE, from the fixed text each kind
/// starts with.
fn driver_kind(text: &str) -> DriverKind {
    const KINDS: [(&str, DriverKind); 6] = [
        ("error performing TLS handshake", DriverKind::Tls),
        ("timeout waiting for server", DriverKind::Timeout),
        ("error connecting to server", DriverKind::Network),
        ("error communicating with the server", DriverKind::Network),
        ("authentication error", DriverKind::Authentication),
        ("invalid configuration", DriverKind::Configuration),
    ];
    KINDS
        .into_iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map_or(DriverKind::Other, |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn extension_names_are_quoted_as_one_identifier() {
        assert_eq!(quote_identifier("pg_trgm"), "\"pg_trgm\"");
        assert_eq!(
            quote_identifier("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
    }

    #[test]
    fn server_version_splits_into_version_and_distribution() {
        assert_eq!(
            server_info("15.18 (Debian 15.18-0+deb12u1)"),
            ServerInfo {
                agent: "PostgreSQL".into(),
                version: "15.18".into(),
                edition: "Debian 15.18-0+deb12u1".into(),
            }
        );
        let plain = server_info("16.4");
        assert_eq!(
            (plain.version.as_str(), plain.edition.as_str()),
            ("16.4", "")
        );
    }

    #[test]
    fn sqlstates_map_to_reasons() {
        assert_eq!(sqlstate_class("28P01"), SqlStateClass::Login);
        assert_eq!(sqlstate_class("28000"), SqlStateClass::Login);
        assert_eq!(sqlstate_class("3D000"), SqlStateClass::UnknownDatabase);
        for transient in ["57P03", "57P01", "53300", "08006"] {
            assert_eq!(
                sqlstate_class(transient),
                SqlStateClass::Transient,
                "{transient}"
            );
        }
        assert_eq!(sqlstate_class("42P01"), SqlStateClass::Other);
    }

    #[test]
    fn driver_errors_without_sqlstate_are_classified_by_kind() {
        assert_eq!(
            driver_kind("error connecting to server: Connection refused (os error 111)"),
            DriverKind::Network
        );
        assert_eq!(
            driver_kind("error performing TLS handshake: server does not support TLS"),
            DriverKind::Tls
        );
        assert_eq!(driver_kind("db error"), DriverKind::Other);
        let target = Target {
            endpoint: "db:5432".into(),
            user: "app".into(),
            database: "app".into(),
            connection_timeout: Duration::from_secs(10),
            acquisition_timeout: Duration::from_secs(30),
        };
        let timeout = target.driver(&tokio_postgres::Error::__private_api_timeout());
        assert_eq!(timeout.reason(), "Timeout");
        assert!(matches!(
            target.pool(PoolError::Timeout(TimeoutType::Wait)),
            EngineError::Timeout { timeout, .. } if timeout == Duration::from_secs(30)
        ));
    }

    #[test]
    fn target_session_attrs_is_read_from_a_uri_listing_several_hosts() {
        assert_eq!(
            session_attrs("postgres://a:5432,b:5433/db?target_session_attrs=read-write"),
            SessionAttrs::ReadWrite
        );
        assert_eq!(session_attrs("postgres://a,b/db"), SessionAttrs::Any);
    }

    #[tokio::test]
    async fn opening_a_pool_does_no_io_and_a_refused_connection_is_unreachable() {
        let mut settings = fixtures::postgres_settings();
        settings.host = "127.0.0.1".into();
        settings.port = 1;
        settings.endpoint = "127.0.0.1:1".into();
        let credentials = Credentials::login("app", "hunter2-secret", "db", "1");
        let pool = open(&settings, &credentials).unwrap();
        let error = pool.ping().await.unwrap_err();
        assert_eq!(error.reason(), "Unreachable", "{error}");
        assert!(error.to_string().contains("refused"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
