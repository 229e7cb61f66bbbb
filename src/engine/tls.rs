//! rustls client settings for engines whose drivers take a rustls `ClientConfig` (PostgreSQL,
//! HTTP). A verified mode checks the chain and the host name (PostgreSQL's `verify-ca` the chain
//! alone); `require` or `insecureSkipVerify` nothing. The roots are the CA bundle from
//! `spec.tls.caSecretRef`, else the system store (the one kube-client's and neo4rs's platform
//! verifiers read on Linux).

use std::sync::Arc;

use crate::{
    credentials::{ClientCert, Credentials},
    engine::EngineError,
    settings::{ConnectionSettings, TlsMode},
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// The TLS client settings for these settings, presenting the client certificate when one was
/// read; `None` when the connection is plain.
pub fn client_config(
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Option<ClientConfig>, EngineError> {
    let ca_pem = credentials.ca_pem.as_deref();
    let provider = Arc::new(ring::default_provider());
    let verifier = match &settings.tls {
        TlsMode::Plain => return Ok(None),
        TlsMode::InsecureSkipVerify => {
            Arc::new(AnyCertificate(provider.clone())) as Arc<dyn ServerCertVerifier>
        }
        TlsMode::Verified(ca) => {
            let roots = match ca {
                Some(_) => ca_roots(ca_pem.ok_or_else(|| {
                    EngineError::Tls(
                        "the CA bundle from spec.tls.caSecretRef was not loaded".into(),
                    )
                })?)?,
                None => system_roots()?,
            };
            verifier(roots, provider.clone(), settings.verify_hostname)?
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &credentials.client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let (chain, key) = client_identity(cert)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                EngineError::Tls(format!(
                    "the client certificate in Secret {:?} does not match its key: {e}",
                    cert.secret_name
                ))
            })?
        }
    };
    Ok(Some(config))
}

/// The alerts (as rustls names them) a server sends when it will not take the client's
/// certificate.
const CLIENT_CERT_ALERTS: [&str; 7] = [
    "UnknownCA",
    "BadCertificate",
    "CertificateRequired",
    "CertificateUnknown",
    "CertificateExpired",
    "CertificateRevoked",
    "UnsupportedCertificate",
];

/// A failure caused by the server refusing the client certificate is a refused login. Under
/// TLS 1.3 the server's alert arrives after the client finished its handshake, so drivers
/// report it as a broken connection (`Unreachable`), which would send the user after the
/// network.
pub fn refused_client_cert(error: EngineError, credentials: &Credentials) -> EngineError {
    let Some(cert) = &credentials.client_cert else {
        return error;
    };
    let text = error.to_string();
    let Some(alert) = CLIENT_CERT_ALERTS
        .iter()
        .find(|alert| text.contains(&format!("received fatal alert: {alert}")))
    else {
        return error;
    };
    EngineError::AuthenticationFailed {
        user: credentials
            .login
            .as_ref()
            .map(|l| l.username.clone())
            .unwrap_or_default(),
        detail: format!(
            "the server refused the client certificate from Secret {:?} (TLS alert {alert})",
            cert.secret_name
        ),
    }
}

/// The chain and key of a client certificate Secret. Errors name the Secret, never the key.
pub fn client_identity(
    cert: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), EngineError> {
    let unreadable = |what: &str| {
        EngineError::Tls(format!(
            "{what} in Secret {:?} is not PEM; store the certificate chain in tls.crt and its private key in tls.key",
            cert.secret_name
        ))
    };
    let chain = CertificateDer::pem_slice_iter(&cert.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| unreadable("tls.crt"))?;
    if chain.is_empty() {
        return Err(unreadable("tls.crt"));
    }
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.expose().as_bytes())
        .map_err(|_| unreadable("tls.key"))?;
    Ok((chain, key))
}

fn verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
    verify_hostname: bool,
) -> Result<Arc<dyn ServerCertVerifier>, EngineError> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| EngineError::Tls(e.to_string()))?;
    Ok(if verify_hostname {
        webpki
    } else {
        Arc::new(ChainOnly(webpki))
    })
}

fn ca_roots(pem: &[u8]) -> Result<RootCertStore, EngineError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            EngineError::Tls(format!(
                "the CA bundle from spec.tls.caSecretRef is not valid PEM: {e}"
            ))
        })?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(EngineError::Tls(
            "the CA bundle from spec.tls.caSecretRef holds no usable certificate".into(),
        ));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, EngineError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err(EngineError::Tls(
            "no CA certificates found in the system store; set spec.tls.caSecretRef".into(),
        ));
    }
    Ok(roots)
}

/// `sslmode=verify-ca`: the certificate must chain to a trusted root; the name it carries is not
/// compared with the host. webpki checks the name last, so a name mismatch means the chain held.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode=require` or `insecureSkipVerify`: any certificate, but the handshake signatures are
/// still checked, so the session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{api::CaSecretRef, fixtures};

    // Test-only certificates (no keys), valid until 2126: a CA, a server certificate it signed
    // for `db.example`, and an unrelated CA.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUahL4vj8j9y0vJZ/RYpQchISwBJMwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZGJjb25uIHRlc3QgQ0EwIBcNMjYxMTIzMjAzNTIwWhgPMjEy
NjEwMzAyMDM1MjBaMBkxFzAVBgNVBAMMDmRiY29ubiB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEJEhcD787uqwbkVBqQdW6ZlxdcUY4GzmXcmBiJwni
QTLKE1dyJcVOTF+S7KLLvFQILsgLMuHcU/Uhx0XaZ2IkfKNjMGEwHQYDVR0OBBYE
FJhPyg8crqf5eKWjjjBndNAzdvu0MB8GA1UdIwQYMBaAFJhPyg8crqf5eKWjjjBn
dNAzdvu0MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49
BAMCA0cAMEQCIAQSDT8b7TiTE3swKXjKs7D5DCzfJAn3S9Xe5vG6CKNGAiANajBl
ZJM8o6745gfIPgOZ8RIGhxJxt/ZUsKrxGNtxug==
-----END CERTIFICATE-----";
    const SERVER: &str = "-----BEGIN CERTIFICATE-----
MIIBwDCCAWagAwIBAgIUGFUD4SUpgIQ8/jcUq1ahqZcg7Q4wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZGJjb25uIHRlc3QgQ0EwIBcNMjYxMTIzMjAzNTIxWhgPMjEy
NjEwMzAyMDM1MjFaMBUxEzARBgNVBAMMCmRiLmV4YW1wbGUwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAQdG5A/x+K5uKHCE5qBojqO2NA+Hi/p8I5TMQmdYWz9tDR/
1WSIctkiH55CydxXM9NwFOPTcRsj92L1BC/5wn1Io4GNMIGKMAwGA1UdEwEB/wQC
MAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMBUGA1UdEQQO
MAyCCmRiLmV4YW1wbGUwHQYDVR0OBBYEFBO70tad1MlOT6jyNusfQWeq8dH6MB8G
A1UdIwQYMBaAFJhPyg8crqf5eKWjjjBndNAzdvu0MAoGCCqGSM49BAMCA0gAMEUC
IG/KlhlAopKT55yagHPHgldnpE0OkNouZkH0BvQ3MpXYAiEAuVylO/HLIj43WwPk
Y8u4WDEuYxoAvXWANX8EhgD1DSs=
-----END CERTIFICATE-----";
    const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUCimvz5FKRJXCz+b3Bw+ymXWaNKAwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdW5yZWxhdGVkIENBMCAXDTI2MTEyMzIwMzUyMVoYDzIxMjYx
MDMwMjAzNTIxWjAXMRUwEwYDVQQDDAx1bnJlbGF0ZWQgQ0EwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAAQVXIursX3YCG64/n0HIQN9d5KGT+TN5PVt77+u9Aaf8+uH
Hcr57OOT2FzUo3dx7W73x9UUbFZ9oF7L3Cvmj3QLo2MwYTAdBgNVHQ4EFgQUYycb
LxlcyiJSbeBAPLuvysVNJGYwHwYDVR0jBBgwFoAUYycbLxlcyiJSbeBAPLuvysVN
JGYwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwID
SAAwRQIhALeH3vwijtcGSxz8Jb40Nihvi1YdJqM0HCzT5CAEtIA8AiAZXpwbVnaC
5Gjls4sHwvM1xhx4OOAamqt8KzYVs2VgpA==
-----END CERTIFICATE-----";

    fn check(ca: &str, verify_hostname: bool, host: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(ring::default_provider());
        let verifier = verifier(ca_roots(ca.as_bytes()).unwrap(), provider, verify_hostname)
            .expect("verifier builds");
        let server = CertificateDer::from_pem_slice(SERVER.as_bytes()).unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let in_2030 = UnixTime::since_unix_epoch(Duration::from_secs(1_893_456_000));
        verifier
            .verify_server_cert(&server, &[], &name, &[], in_2030)
            .map(|_| ())
    }

    #[test]
    fn verify_full_checks_chain_and_name() {
        assert!(check(CA, true, "db.example").is_ok());
        assert!(matches!(
            check(CA, true, "other.example"),
            Err(rustls::Error::InvalidCertificate(_))
        ));
        assert!(check(OTHER_CA, true, "db.example").is_err());
    }

    #[test]
    fn verify_ca_checks_the_chain_but_not_the_name() {
        assert!(check(CA, false, "other.example").is_ok());
        assert!(matches!(
            check(OTHER_CA, false, "db.example"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
    }

    #[test]
    fn a_bad_ca_bundle_is_a_tls_error() {
        assert!(matches!(
            ca_roots(b"not a certificate"),
            Err(EngineError::Tls(_))
        ));
        let mut settings = fixtures::postgres_settings();
        settings.tls = TlsMode::Verified(Some(CaSecretRef {
            name: "ca".into(),
            key: "ca.crt".into(),
            namespace: None,
        }));
        assert!(matches!(
            client_config(&settings, &Credentials::default()),
            Err(EngineError::Tls(_))
        ));
        assert!(
            client_config(
                &settings,
                &Credentials {
                    ca_pem: Some(CA.as_bytes().to_vec()),
                    ..Credentials::default()
                }
            )
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn plain_needs_no_connector_and_require_builds_one() {
        let mut settings = fixtures::postgres_settings();
        assert_eq!(settings.tls, TlsMode::Plain);
        assert!(
            client_config(&settings, &Credentials::default())
                .unwrap()
                .is_none()
        );
        settings.tls = TlsMode::InsecureSkipVerify;
        assert!(
            client_config(&settings, &Credentials::default())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_certificate_alert_from_the_server_is_a_refused_login_only_with_a_client_certificate() {
        let broken = EngineError::Unreachable {
            endpoint: "db:5432".into(),
            detail: "error communicating with the server: received fatal alert: UnknownCA".into(),
        };
        let without = Credentials::login("app", "pw", "login", "1");
        assert_eq!(refused_client_cert(broken.clone(), &without), broken);
        let with = Credentials {
            client_cert: Some(ClientCert {
                cert_pem: Vec::new(),
                key_pem: crate::credentials::SecretString::new("unused"),
                secret_name: "client".into(),
                secret_resource_version: "1".into(),
            }),
            ..without
        };
        let refused = refused_client_cert(broken, &with);
        assert_eq!(refused.reason(), "AuthenticationFailed");
        assert!(
            refused
                .to_string()
                .contains("Secret \"client\" (TLS alert UnknownCA)"),
            "{refused}"
        );
        let refused_connection = EngineError::Unreachable {
            endpoint: "db:5432".into(),
            detail: "Connection refused".into(),
        };
        assert_eq!(
            refused_client_cert(refused_connection.clone(), &with),
            refused_connection
        );
    }
}
