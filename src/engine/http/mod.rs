//! Services reached over HTTP, such as Graphiti: `spec.uri` is the health endpoint, probed with
//! a GET whose answer is judged by `spec.http` (any 2xx by default, optionally a JSON field).
//!
//! The client is hyper-util's pooled client over hyper-rustls, the HTTP stack kube already
//! builds (no second TLS or crypto stack): HTTP/1.1 with keep-alive, so a probe reuses the
//! connection of the last one. Certificates are checked as for the other engines
//! (`engine/tls.rs`): `https://` verifies against the system roots or `spec.tls.caSecretRef`,
//! `insecureSkipVerify` accepts any.
//!
//! A login is optional: without `spec.credentials` no Authorization header is sent; with it
//! the login goes as basic auth, or the Secret's password as a bearer token
//! (`spec.http.auth: bearer`). The header is marked sensitive, so hyper never prints it.

mod judge;
pub mod spec;

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use futures::{FutureExt, future::BoxFuture};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{
    Request, Uri,
    body::Bytes,
    header::{ACCEPT, AUTHORIZATION, HeaderValue, SERVER, USER_AGENT},
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::{ClientConfig, RootCertStore, crypto::ring};
use url::Url;

use self::{
    judge::{Verdict, judge},
    spec::{HttpAuth, HttpSpec},
};
use super::{
    Descriptor, EngineError, FailureClass, Pool, Reason,
    descriptor::{Login, Section, SpecRule, UriOptions, UriShape},
    sections, tls,
};
use crate::{
    api::ServerInfo,
    credentials::Credentials,
    settings::{ConnectionSettings, SpecError, TlsMode},
};

pub static ENGINE: Descriptor = Descriptor {
    name: "http",
    product: "HTTP services (e.g. Graphiti)",
    uri: UriShape {
        schemes: &["http", "https"],
        default_port: 80,
        several_hosts: false,
        example: "http://host:8000/healthcheck",
        // For http(s) the URL parser reads a host whose last label is a number as an IPv4
        // address, and refuses it unless it is one: a dotted quad, or a name whose last label
        // starts with a letter.
        pattern: concat!(
            r"^https?://(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|([A-Za-z0-9_-]+\.)*[A-Za-z_-][A-Za-z0-9_-]*\.?)",
            crate::uri_port_pattern!(),
            r"(/[^\s#\\@]*)?$"
        ),
        message: "for engine http, uri must look like http://host:8000/healthcheck (scheme http or https) with no credentials, '@' or fragment",
        verifying: r"^https://",
        tls_applies: "to https:// URIs",
        parse: parse_uri,
    },
    login: Login::Optional,
    sections: &[&SECTION, &sections::CLIENT_CERT],
    rules: &[SpecRule {
        rule: "!has(self.http) || !has(self.http.auth) || has(self.credentials)",
        message: "spec.http.auth sends the login from spec.credentials: name its Secret there, or remove spec.http.auth",
        path: ".http.auth",
    }],
    reasons: &[&UNEXPECTED_STATUS, &UNEXPECTED_RESPONSE],
    open,
};

const SECTION: Section = Section {
    field: "spec.http",
    path: ".http",
    present: "has(self.http)",
};

static UNEXPECTED_STATUS: Reason = Reason {
    name: "UnexpectedStatus",
    class: FailureClass::Transient,
    server_answered: true,
    hint: "The endpoint answered with a status that spec.http.expectStatus (any 2xx by default) does not accept; check the path in spec.uri and the service's own health. Retrying with backoff.",
};

static UNEXPECTED_RESPONSE: Reason = Reason {
    name: "UnexpectedResponse",
    class: FailureClass::Transient,
    server_answered: true,
    hint: "The endpoint answered, but not with what spec.http.expectJson asks for; the message says what it found. Retrying with backoff.",
};

/// The scheme says the TLS mode; the path and query name the endpoint and stay as written.
fn parse_uri(url: &Url) -> Result<UriOptions, SpecError> {
    if url.fragment().is_some() {
        return Err(SpecError::UnexpectedUriParts(
            "spec.uri for http must not carry a fragment (#...): a server never sees it",
        ));
    }
    // An `@` after the host is most likely a login typed in the wrong place; it would be sent
    // in the request line and land in the server's access log.
    if url.path().contains('@') || url.query().is_some_and(|q| q.contains('@')) {
        return Err(SpecError::UnexpectedUriParts(
            "spec.uri for http must not contain '@' in its path or query; put a login in the Secret named by spec.credentials.secretRef",
        ));
    }
    Ok(UriOptions {
        tls: match url.scheme() {
            "https" => TlsMode::Verified(None),
            _ => TlsMode::Plain,
        },
        verify_hostname: true,
        database: None,
    })
}

/// The largest answer read for the JSON check; a health answer is small.
const MAX_BODY: usize = 64 * 1024;

struct HttpPool {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: Uri,
    authorization: Option<HeaderValue>,
    accept: &'static str,
    spec: HttpSpec,
    endpoint: String,
    user: String,
    connection_timeout: Duration,
}

fn open(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Arc<dyn Pool>, EngineError> {
    let spec = settings.http.clone().unwrap_or_default();
    let uri: Uri = settings
        .uri
        .parse()
        .map_err(|e| EngineError::Configuration(format!("spec.uri: {e}")))?;
    let config = match tls::client_config(settings, credentials)? {
        Some(config) => config,
        // An http:// URI never starts TLS; the connector still wants settings.
        None => ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| EngineError::Tls(e.to_string()))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.pool.connection_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(settings.pool.max_size)
        .pool_idle_timeout(settings.pool.idle_timeout)
        .build(connector);
    Ok(Arc::new(HttpPool {
        client,
        uri,
        authorization: authorization(&spec, credentials)?,
        accept: if spec.expect_json.is_some() {
            "application/json"
        } else {
            "*/*"
        },
        spec,
        endpoint: settings.endpoint.clone(),
        user: credentials
            .login
            .as_ref()
            .map(|l| l.username.clone())
            .unwrap_or_default(),
        connection_timeout: settings.pool.connection_timeout,
    }))
}

/// The Authorization header for the login, if there is one.
fn authorization(
    spec: &HttpSpec,
    credentials: &Credentials,
) -> Result<Option<HeaderValue>, EngineError> {
    let Some(login) = &credentials.login else {
        if spec.auth.is_some() {
            return Err(EngineError::Configuration(
                "spec.http.auth is set but spec.credentials names no Secret to send".into(),
            ));
        }
        return Ok(None);
    };
    let password = login.password.expose();
    let text = match spec.auth.unwrap_or(HttpAuth::Basic) {
        HttpAuth::Bearer => format!("Bearer {password}"),
        HttpAuth::Basic => {
            if login.username.is_empty() {
                return Err(EngineError::Configuration(format!(
                    "basic auth needs a username, and Secret {:?} has none; add it, or set spec.http.auth: bearer to send the password as a token",
                    login.secret_name
                )));
            }
            let pair = format!("{}:{password}", login.username);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        EngineError::Configuration(format!(
            "the login in Secret {:?} holds characters an HTTP header cannot carry",
            login.secret_name
        ))
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

impl HttpPool {
    /// One GET, judged; the server's identity from its `Server` header.
    async fn check(&self) -> Result<ServerInfo, EngineError> {
        let mut request = Request::get(self.uri.clone())
            .header(USER_AGENT, crate::FIELD_MANAGER)
            .header(ACCEPT, self.accept);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| EngineError::Configuration(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.classify(&e))?;
        let status = response.status();
        let server = server_info(response.headers().get(SERVER));
        // Read to the end (up to a limit), so the connection can serve the next probe.
        let body = tokio::time::timeout(
            self.connection_timeout,
            Limited::new(response.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_elapsed| EngineError::Timeout {
            endpoint: self.endpoint.clone(),
            timeout: self.connection_timeout,
        })?
        .map(|body| body.to_bytes())
        .unwrap_or_default();
        let path = self.uri.path();
        let answered = || match status.canonical_reason() {
            Some(text) => format!("GET {path} answered {} {text}", status.as_u16()),
            None => format!("GET {path} answered {}", status.as_u16()),
        };
        match judge(&self.spec, status.as_u16(), &body) {
            Verdict::Healthy => Ok(server),
            Verdict::Refused(_) => Err(EngineError::AuthenticationFailed {
                user: self.user.clone(),
                detail: if self.authorization.is_some() {
                    format!("{}: the server refused the login", answered())
                } else {
                    format!(
                        "{}: the server asks for a login, and spec.credentials names none",
                        answered()
                    )
                },
            }),
            Verdict::Status(_) => Err(EngineError::Engine {
                reason: &UNEXPECTED_STATUS,
                detail: format!("{}; expected {}", answered(), self.expected_status()),
            }),
            Verdict::Response(found) => Err(EngineError::Engine {
                reason: &UNEXPECTED_RESPONSE,
                detail: format!("GET {path}: {found}"),
            }),
        }
    }

    fn expected_status(&self) -> String {
        if self.spec.expect_status.is_empty() {
            return "any 2xx".into();
        }
        let codes: Vec<String> = self.spec.expect_status.iter().map(u16::to_string).collect();
        codes.join(" or ")
    }

    /// A request that got no answer: TLS, a connect timeout, or no connection at all.
    fn classify(&self, error: &hyper_util::client::legacy::Error) -> EngineError {
        // hyper-util prints only its own layer (`client error (Connect)`); the causes say why.
        let detail = super::with_causes(error);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            match cause_kind(cause) {
                Some(CauseKind::Tls) => return EngineError::Tls(detail),
                Some(CauseKind::TimedOut) => {
                    return EngineError::Timeout {
                        endpoint: self.endpoint.clone(),
                        timeout: self.connection_timeout,
                    };
                }
                None => source = cause.source(),
            }
        }
        EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail,
        }
    }
}

enum CauseKind {
    Tls,
    TimedOut,
}

/// What one error in the chain says. A failed handshake is rustls' error inside an I/O error
/// (tokio-rustls) inside another (hyper-rustls), and `io::Error::source` skips the error it
/// wraps, so wrapped errors are opened here.
fn cause_kind(cause: &(dyn std::error::Error + 'static)) -> Option<CauseKind> {
    if cause.is::<rustls::Error>() {
        return Some(CauseKind::Tls);
    }
    let io = cause.downcast_ref::<std::io::Error>()?;
    if io.kind() == std::io::ErrorKind::TimedOut {
        return Some(CauseKind::TimedOut);
    }
    let inner: &(dyn std::error::Error + 'static) = io.get_ref()?;
    cause_kind(inner)
}

impl Pool for HttpPool {
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        async move { self.check().await.map(drop) }.boxed()
    }

    fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>> {
        self.check().boxed()
    }
}

/// `Server: nginx/1.22.1` or `Apache/2.4.62 (Debian)`: product, version, and the comment as
/// the edition. Without the header the server stays unnamed.
fn server_info(header: Option<&HeaderValue>) -> ServerInfo {
    let Some(text) = header.and_then(|h| h.to_str().ok()).map(str::trim) else {
        return ServerInfo {
            agent: "HTTP server".into(),
            ..ServerInfo::default()
        };
    };
    let (product, comment) = text.split_once(' ').unwrap_or((text, ""));
    let (agent, version) = product.split_once('/').unwrap_or((product, ""));
    ServerInfo {
        agent: agent.to_owned(),
        version: version.to_owned(),
        edition: comment
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn settings(uri: &str) -> ConnectionSettings {
        let mut spec = fixtures::neo4j_spec("creds");
        spec.engine = "http".into();
        spec.uri = uri.into();
        spec.credentials = None;
        ConnectionSettings::from_spec(&spec).expect("a valid http spec")
    }

    #[test]
    fn the_scheme_chooses_tls_and_the_port_defaults_by_scheme() {
        let plain = settings("http://graphiti:8000/healthcheck");
        assert_eq!((plain.tls.clone(), plain.port), (TlsMode::Plain, 8000));
        let secure = settings("https://graphiti.example/healthcheck?deep=1");
        assert_eq!(
            (secure.tls.clone(), secure.port),
            (TlsMode::Verified(None), 443)
        );
        assert_eq!(settings("http://graphiti/").port, 80);
    }

    #[test]
    fn the_server_header_names_product_version_and_comment() {
        let parse = |text: &'static str| server_info(Some(&HeaderValue::from_static(text)));
        assert_eq!(
            parse("nginx/1.22.1"),
            ServerInfo {
                agent: "nginx".into(),
                version: "1.22.1".into(),
                edition: String::new(),
            }
        );
        assert_eq!(parse("Apache/2.4.62 (Debian)").edition, "Debian");
        assert_eq!(parse("uvicorn").agent, "uvicorn");
        assert_eq!(server_info(None).agent, "HTTP server");
    }

    #[test]
    fn the_login_goes_as_basic_auth_or_a_bearer_token_and_stays_hidden() {
        let credentials = Credentials::login("graph", "s3cret-token", "login", "1");
        let basic = authorization(&HttpSpec::default(), &credentials)
            .unwrap()
            .unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic Z3JhcGg6czNjcmV0LXRva2Vu");
        assert!(basic.is_sensitive());
        assert!(!format!("{basic:?}").contains("Z3JhcGg"));
        let bearer_spec = HttpSpec {
            auth: Some(HttpAuth::Bearer),
            ..HttpSpec::default()
        };
        let token = Credentials::login("", "s3cret-token", "login", "1");
        let bearer = authorization(&bearer_spec, &token).unwrap().unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer s3cret-token");
        let refused = authorization(&HttpSpec::default(), &token).unwrap_err();
        assert!(refused.to_string().contains("spec.http.auth: bearer"), "{refused}");
        assert_eq!(
            authorization(&HttpSpec::default(), &Credentials::default()).unwrap(),
            None
        );
    }

    #[test]
    fn a_handshake_failure_is_told_from_a_timeout_however_it_is_wrapped() {
        // As hyper-rustls hands it on: tokio-rustls' I/O error, wrapped once more.
        let handshake = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(matches!(cause_kind(&handshake), Some(CauseKind::Tls)));
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(matches!(cause_kind(&timeout), Some(CauseKind::TimedOut)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(cause_kind(&refused).is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable() {
        let pool = open(&settings("http://127.0.0.1:1/healthcheck"), &Credentials::default())
            .unwrap();
        let error = pool.ping().await.unwrap_err();
        assert_eq!(error.reason(), "Unreachable", "{error}");
        assert!(error.to_string().contains("refused"), "{error}");
    }
}
