//! MySQL and MariaDB (one wire protocol) through `mysql_async` 0.37, TLS by rustls with ring.
//!
//! Why mysql_async and not sqlx:
//! - it is the maintained async driver with a pool of its own whose limits map onto `spec.pool`
//!   (`PoolConstraints` for maxSize, an inactive-connection TTL for idleTimeout);
//! - its server errors carry the server's numeric code (`ServerError::code`), which the reasons
//!   below are made from, and a typed `DriverError` for what the client itself refuses (a server
//!   that offers no TLS when TLS was asked for is `NoClientSslFlagFromServer`, never a silent
//!   fallback);
//! - built without default features it speaks rustls with ring, the TLS stack and crypto
//!   provider kube already builds: no OpenSSL, no aws-lc. sqlx would add a query layer, macros
//!   and its own runtime/TLS feature matrix for a probe of two statements.
//!
//! TLS follows PostgreSQL's `sslmode` names (`engine::sslmode`). With `verify-*` and no
//! `spec.tls.caSecretRef` the roots are the Mozilla bundle compiled into the driver
//! (webpki-roots), not the system store: set `caSecretRef` for a private CA.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use mysql_async::{
    ClientIdentity, DriverError, IoError, OptsBuilder, PoolConstraints, PoolOpts, SslOpts,
    prelude::Queryable,
};
use url::Url;

use super::{
    Descriptor, EngineError, Pool,
    descriptor::{Login, UriOptions, UriShape},
    sections, sslmode, tls,
};
use crate::{
    api::ServerInfo,
    credentials::Credentials,
    settings::{ConnectionSettings, SpecError, TlsMode},
};

pub static ENGINE: Descriptor = Descriptor {
    name: "mysql",
    product: "MySQL, MariaDB",
    uri: UriShape {
        schemes: &["mysql"],
        default_port: 3306,
        several_hosts: false,
        example: "mysql://host:3306/database?sslmode=verify-full",
        pattern: concat!(
            r"^mysql://",
            crate::uri_host_port_pattern!(),
            crate::sslmode_uri_tail_pattern!()
        ),
        message: "for engine mysql, uri must look like mysql://host:3306/database with no credentials; the only query parameter allowed is sslmode=disable|require|verify-ca|verify-full",
        verifying: sslmode::VERIFYING,
        tls_applies: sslmode::TLS_APPLIES,
        parse: parse_uri,
    },
    login: Login::Required,
    sections: &[&sections::DATABASE, &sections::CLIENT_CERT],
    rules: &[],
    reasons: &[],
    open,
};

fn parse_uri(url: &Url) -> Result<UriOptions, SpecError> {
    sslmode::parse(
        url,
        "spec.uri for mysql may carry only a database path and ?sslmode=...; put the login in the Secret named by spec.credentials.secretRef and other settings in the spec",
    )
}

/// 1044 also answers a database that does not exist, to a user without rights on that name.
const NEEDS: &str = "The login works but may not use this database; the server says so too when the database does not exist and the user has no rights on that name. Correct the database in spec.uri or spec.database, or grant the user access to it (GRANT SELECT ON db.* TO 'user'@'host').";

struct MysqlPool {
    pool: mysql_async::Pool,
    target: Target,
}

fn open(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Arc<dyn Pool>, EngineError> {
    let login = super::required_login(credentials)?;
    let limits = &settings.pool;
    let constraints = PoolConstraints::new(0, limits.max_size).ok_or_else(|| {
        EngineError::Configuration("spec.pool.maxSize must be at least 1".into())
    })?;
    let options = OptsBuilder::default()
        // An IPv6 literal comes out of the URI in brackets; the driver wants it bare.
        .ip_or_hostname(settings.host.trim_start_matches('[').trim_end_matches(']'))
        .tcp_port(settings.port)
        .user(Some(&login.username))
        .pass(Some(login.password.expose()))
        .db_name(settings.database.as_deref())
        // The driver would otherwise switch to the server's Unix socket when it runs on the
        // same host, and the probe would no longer test the address in spec.uri.
        .prefer_socket(false)
        .pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(limits.idle_timeout)
                .with_abs_conn_ttl(Some(limits.max_lifetime)),
        )
        .ssl_opts(ssl_options(settings, credentials)?);
    let target = Target {
        endpoint: settings.endpoint.clone(),
        user: login.username.clone(),
        database: settings
            .database
            .clone()
            .unwrap_or_else(|| "(none)".into()),
        connection_timeout: limits.connection_timeout,
    };
    Ok(Arc::new(MysqlPool {
        pool: mysql_async::Pool::new(options),
        target,
    }))
}

/// `None` is plain TCP. Otherwise the driver insists on TLS: a server without it fails the
/// handshake (`NoClientSslFlagFromServer`) instead of falling back.
fn ssl_options(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Option<SslOpts>, EngineError> {
    let mut options = SslOpts::default();
    if let Some(cert) = &credentials.client_cert {
        // Read here first so that a bad PEM is named by its Secret, not by the driver.
        tls::client_identity(cert)?;
        options = options.with_client_identity(Some(ClientIdentity::new(
            cert.cert_pem.clone().into(),
            cert.key_pem.expose().as_bytes().to_vec().into(),
        )));
    }
    Ok(Some(match &settings.tls {
        TlsMode::Plain => return Ok(None),
        TlsMode::InsecureSkipVerify => options.with_danger_accept_invalid_certs(true),
        TlsMode::Verified(ca) => {
            let options = options.with_danger_skip_domain_validation(!settings.verify_hostname);
            match ca {
                None => options,
                Some(_) => {
                    let pem = credentials.ca_pem.clone().ok_or_else(|| {
                        EngineError::Tls(
                            "the CA bundle from spec.tls.caSecretRef was not loaded".into(),
                        )
                    })?;
                    options
                        .with_root_certs(vec![pem.into()])
                        .with_disable_built_in_roots(true)
                }
            }
        }
    }))
}

impl MysqlPool {
    async fn conn(&self) -> Result<mysql_async::Conn, EngineError> {
        match tokio::time::timeout(self.target.connection_timeout, self.pool.get_conn()).await {
            Ok(conn) => conn.map_err(|e| self.target.classify(e)),
            Err(_elapsed) => Err(EngineError::Timeout {
                endpoint: self.target.endpoint.clone(),
                timeout: self.target.connection_timeout,
            }),
        }
    }
}

impl Pool for MysqlPool {
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move {
            let mut conn = self.conn().await?;
            conn.ping().await.map_err(|e| self.target.classify(e))
        }
        .boxed()
    }

    fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>> {
        async move {
            let mut conn = self.conn().await?;
            let row: Option<(String, String)> = conn
                .query_first("SELECT VERSION(), @@version_comment")
                .await
                .map_err(|e| self.target.classify(e))?;
            let (version, comment) = row.ok_or_else(|| {
                EngineError::QueryFailed("SELECT VERSION() returned no row".into())
            })?;
            Ok(server_info(&version, &comment))
        }
        .boxed()
    }
}

/// Closes the pool's sessions now rather than when the driver's background task notices, so a
/// rotated login or a deleted connection leaves no session open on the server.
impl Drop for MysqlPool {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), pool.disconnect()).await;
            });
        }
    }
}

/// `VERSION()` reads like `10.11.19-MariaDB-0+deb12u1` (MariaDB) or `8.0.40` (MySQL, which
/// says its flavour in `@@version_comment`, e.g. `MySQL Community Server - GPL`).
fn server_info(version: &str, comment: &str) -> ServerInfo {
    let agent = if version.contains("MariaDB") {
        "MariaDB"
    } else {
        "MySQL"
    };
    ServerInfo {
        agent: agent.into(),
        version: version.split('-').next().unwrap_or(version).to_owned(),
        edition: comment.trim().to_owned(),
    }
}

/// What the server's error code says about a failed login or probe.
#[derive(Debug, PartialEq, Eq)]
enum CodeClass {
    /// 1045 access denied (wrong user or password), 1130 host not allowed, 1698 access denied
    /// without a password, 1820/1862 the password must be changed or has expired.
    Login,
    /// 1044 access denied to the database.
    NoAccess,
    /// 1049 unknown database.
    UnknownDatabase,
    /// 1040 too many connections, 1203/1226 a per-user connection limit, 1053 server shutting
    /// down, 1205 lock wait timeout, 1213 deadlock, 1927 connection killed.
    Transient,
    /// 3159 the server allows only TLS connections.
    TlsRequired,
    Other,
}

fn code_class(code: u16) -> CodeClass {
    match code {
        1045 | 1130 | 1698 | 1820 | 1862 => CodeClass::Login,
        1044 => CodeClass::NoAccess,
        1049 => CodeClass::UnknownDatabase,
        1040 | 1053 | 1203 | 1205 | 1213 | 1226 | 1927 => CodeClass::Transient,
        3159 => CodeClass::TlsRequired,
        _ => CodeClass::Other,
    }
}

/// What a failure message names: never the password (the server's messages name the user and
/// the host it connected from, and whether a password was used, not the password).
struct Target {
    endpoint: String,
    user: String,
    database: String,
    connection_timeout: Duration,
}

impl Target {
    fn classify(&self, error: mysql_async::Error) -> EngineError {
        use mysql_async::Error as E;
        let unreachable = |detail: String| EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        };
        match error {
            E::Server(server) => {
                let detail = format!("{} ({}): {}", server.code, server.state, server.message);
                match code_class(server.code) {
                    CodeClass::Login => EngineError::AuthenticationFailed {
                        user: self.user.clone(),
                        detail,
                    },
                    CodeClass::NoAccess => EngineError::PermissionDenied {
                        user: self.user.clone(),
                        detail,
                        needs: NEEDS,
                    },
                    CodeClass::UnknownDatabase => EngineError::DatabaseNotFound {
                        database: self.database.clone(),
                    },
                    CodeClass::Transient => EngineError::Transient(detail),
                    CodeClass::TlsRequired => EngineError::Tls(format!(
                        "{detail}; use sslmode=require, verify-ca or verify-full in spec.uri"
                    )),
                    CodeClass::Other => EngineError::QueryFailed(detail),
                }
            }
            E::Io(IoError::Tls(e)) => EngineError::Tls(e.to_string()),
            // tokio-rustls reports a failed handshake as an I/O error around rustls' own.
            E::Io(IoError::Io(e))
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                EngineError::Tls(e.to_string())
            }
            E::Io(IoError::Io(e)) => unreachable(e.to_string()),
            E::Driver(DriverError::NoClientSslFlagFromServer) => EngineError::Tls(
                "the server does not offer TLS, which spec.uri's sslmode asks for".into(),
            ),
            E::Driver(DriverError::ConnectionClosed) => {
                unreachable("the server closed the connection".into())
            }
            E::Url(e) => EngineError::Configuration(e.to_string()),
            other => EngineError::QueryFailed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn server_identity_tells_mariadb_from_mysql() {
        assert_eq!(
            server_info("10.11.19-MariaDB-0+deb12u1", "Debian 12"),
            ServerInfo {
                agent: "MariaDB".into(),
                version: "10.11.19".into(),
                edition: "Debian 12".into(),
            }
        );
        let mysql = server_info("8.0.40", "MySQL Community Server - GPL");
        assert_eq!(
            (mysql.agent.as_str(), mysql.version.as_str()),
            ("MySQL", "8.0.40")
        );
    }

    #[test]
    fn server_codes_map_to_reasons() {
        let target = Target {
            endpoint: "db:3306".into(),
            user: "app".into(),
            database: "app".into(),
            connection_timeout: Duration::from_secs(1),
        };
        let server = |code| {
            target.classify(mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "28000".into(),
            }))
        };
        assert_eq!(server(1045).reason(), "AuthenticationFailed");
        assert_eq!(server(1049).reason(), "DatabaseNotFound");
        assert_eq!(server(1040).reason(), "TransientError");
        assert_eq!(server(1044).reason(), "PermissionDenied");
        assert_eq!(server(3159).reason(), "TLSError");
        assert_eq!(server(1146).reason(), "ProbeFailed");
        assert!(server(1045).to_string().contains("1045"));
        let no_tls = target.classify(mysql_async::Error::Driver(
            DriverError::NoClientSslFlagFromServer,
        ));
        assert_eq!(no_tls.reason(), "TLSError");
        let handshake = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let handshake = target.classify(mysql_async::Error::Io(IoError::Io(handshake)));
        assert_eq!(handshake.reason(), "TLSError", "{handshake}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let refused = target.classify(mysql_async::Error::Io(IoError::Io(refused)));
        assert_eq!(refused.reason(), "Unreachable");
    }

    fn settings(uri: &str) -> ConnectionSettings {
        let mut spec = fixtures::postgres_spec("creds");
        spec.engine = "mysql".into();
        spec.uri = uri.into();
        ConnectionSettings::from_spec(&spec).expect("a valid mysql spec")
    }

    #[test]
    fn sslmode_gives_the_driver_tls_options_without_fallback() {
        let credentials = Credentials::login("app", "unused-password", "db", "1");
        let options = |uri| ssl_options(&settings(uri), &credentials).unwrap();
        assert!(options("mysql://db/app").is_none());
        let require = options("mysql://db/app?sslmode=require").unwrap();
        assert!(require.accept_invalid_certs());
        let verify_ca = options("mysql://db/app?sslmode=verify-ca").unwrap();
        assert!(!verify_ca.accept_invalid_certs() && verify_ca.skip_domain_validation());
        let verify_full = options("mysql://db/app?sslmode=verify-full").unwrap();
        assert!(!verify_full.accept_invalid_certs() && !verify_full.skip_domain_validation());
    }

    #[tokio::test]
    async fn opening_a_pool_does_no_io_and_a_refused_connection_is_unreachable() {
        let credentials = Credentials::login("app", "hunter2-secret", "db", "1");
        let pool = open(&settings("mysql://127.0.0.1:1/app"), &credentials).unwrap();
        let error = pool.ping().await.unwrap_err();
        assert_eq!(error.reason(), "Unreachable", "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
