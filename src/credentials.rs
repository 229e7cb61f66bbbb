//! Reading the login (and an optional CA bundle) from Secrets in the connection's namespace.
//! Values stay in memory: they are never logged, copied into status, or formatted by `Debug`.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    sync::LazyLock,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::{
    api::{CaSecretRef, SecretKeysRef},
    deadline,
};

/// A value read from a Secret. `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What one connection reads from Secrets: its login, if `spec.credentials` names one (an engine
/// may be reached without), and the CA bundle, if `spec.tls.caSecretRef` names one.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub login: Option<Login>,
    /// PEM CA bundle, when `spec.tls.caSecretRef` is set.
    pub ca_pem: Option<Vec<u8>>,
    /// The CA Secret's resourceVersion, when there is one.
    pub ca_resource_version: Option<String>,
    /// The client certificate, when `spec.tls.clientCertSecretRef` names one.
    pub client_cert: Option<ClientCert>,
}

/// A client certificate chain and its key (PEM), with the Secret version they came from.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: SecretString,
    pub secret_name: String,
    pub secret_resource_version: String,
}

/// A login, with the Secret version it came from.
#[derive(Clone, Debug)]
pub struct Login {
    /// Empty where the engine lets the Secret leave it out (a bearer token needs none).
    pub username: String,
    pub password: SecretString,
    pub secret_name: String,
    pub secret_resource_version: String,
}

impl Credentials {
    /// A login read from `secret_name` at `version`, and no CA.
    pub fn login(username: &str, password: &str, secret_name: &str, version: &str) -> Self {
        Self {
            login: Some(Login {
                username: username.to_owned(),
                password: SecretString::new(password),
                secret_name: secret_name.to_owned(),
                secret_resource_version: version.to_owned(),
            }),
            ..Self::default()
        }
    }

    /// A process-local fingerprint of the values, to notice a rotation without keeping or
    /// publishing anything derived from the password: the hash key is random per process.
    pub fn fingerprint(&self) -> u64 {
        static KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);
        let mut hasher = KEY.build_hasher();
        if let Some(login) = &self.login {
            login.username.hash(&mut hasher);
            login.password.hash(&mut hasher);
        }
        self.ca_pem.hash(&mut hasher);
        if let Some(cert) = &self.client_cert {
            cert.cert_pem.hash(&mut hasher);
            cert.key_pem.hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// What credentials are read from: the references as the spec names them, and the versions of
/// the Secrets they name. Credentials are reused only while these are what the spec and the
/// Secrets say now; anything else is read again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInputs {
    login: Option<[String; 4]>,
    ca: Option<[String; 3]>,
    /// The client certificate Secret's name and version.
    client_cert: Option<[String; 2]>,
}

impl SecretInputs {
    /// From the references and the Secrets' resourceVersions.
    pub fn new(
        login: Option<(&SecretKeysRef, &str)>,
        ca: Option<(&CaSecretRef, &str)>,
        client_cert: Option<(&str, &str)>,
    ) -> Self {
        Self {
            client_cert: client_cert.map(|(name, version)| [name.to_owned(), version.to_owned()]),
            login: login.map(|(login, version)| {
                [
                    login.name.clone(),
                    login.username_key.clone(),
                    login.password_key.clone(),
                    version.to_owned(),
                ]
            }),
            ca: ca.map(|(ca, version)| [ca.name.clone(), ca.key.clone(), version.to_owned()]),
        }
    }

    /// Whether these were read through exactly `login`, `ca` and `client_cert`, whatever the
    /// versions.
    pub fn same_references(
        &self,
        login: Option<&SecretKeysRef>,
        ca: Option<&CaSecretRef>,
        client_cert: Option<&str>,
    ) -> bool {
        let login_version = self.login.as_ref().map_or("", |login| login[3].as_str());
        let ca_version = self.ca.as_ref().map_or("", |ca| ca[2].as_str());
        let cert_version = self
            .client_cert
            .as_ref()
            .map_or("", |cert| cert[1].as_str());
        *self
            == Self::new(
                login.map(|login| (login, login_version)),
                ca.map(|ca| (ca, ca_version)),
                client_cert.map(|name| (name, cert_version)),
            )
    }

    /// What `credentials` were read from, through `login` and `ca`.
    pub fn of(
        login: Option<&SecretKeysRef>,
        ca: Option<&CaSecretRef>,
        credentials: &Credentials,
    ) -> Self {
        let client_cert = credentials
            .client_cert
            .as_ref()
            .map(|c| (c.secret_name.as_str(), c.secret_resource_version.as_str()));
        let login_version = credentials
            .login
            .as_ref()
            .map_or("", |l| l.secret_resource_version.as_str());
        let ca_version = credentials
            .ca_resource_version
            .as_deref()
            .unwrap_or_default();
        Self::new(
            login.map(|login| (login, login_version)),
            ca.map(|ca| (ca, ca_version)),
            client_cert,
        )
    }
}

/// Why the credentials could not be read. Each message says what to create or fix.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "Secret {name:?} was not found in namespace {namespace:?}; create it with the keys {keys}"
    )]
    SecretNotFound {
        name: String,
        namespace: String,
        keys: String,
    },
    #[error(
        "Secret {name:?} has no key {key:?}; add it, or point spec.{field} at the key that holds it"
    )]
    KeyMissing {
        name: String,
        key: String,
        field: &'static str,
    },
    #[error("Secret {name:?} key {key:?} is {problem}; store the value as plain UTF-8 text")]
    ValueInvalid {
        name: String,
        key: String,
        problem: &'static str,
    },
    #[error(
        "Secret {name:?} has type {type_:?}, which does not hold {purpose}; store it in a Secret of type {allowed}"
    )]
    TypeUnsupported {
        name: String,
        type_: String,
        purpose: &'static str,
        allowed: &'static str,
    },
    #[error("cannot read Secret {name:?}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl CredentialsError {
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::SecretNotFound { .. } => "SecretNotFound",
            CredentialsError::KeyMissing { .. } => "SecretKeyMissing",
            CredentialsError::ValueInvalid { .. } => "SecretValueInvalid",
            CredentialsError::TypeUnsupported { .. } => "SecretTypeUnsupported",
            CredentialsError::Api { .. } => "SecretReadFailed",
        }
    }

    /// True when only a change by the user (not a retry) can fix it.
    pub fn needs_user(&self) -> bool {
        !matches!(self, CredentialsError::Api { .. })
    }
}

/// Whether a login Secret must hold a username: engines that may be reached without a login
/// accept one without (a bearer token is only a password).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Username {
    Required,
    Optional,
}

/// Whether a login Secret must hold a password: not where a client certificate proves who
/// logs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Password {
    Required,
    Optional,
}

/// Reads the login Secret, the CA Secret and the client certificate Secret, each if given.
pub async fn load(
    client: &Client,
    namespace: &str,
    login: Option<&SecretKeysRef>,
    username: Username,
    ca: Option<&CaSecretRef>,
    client_cert: Option<&str>,
) -> Result<Credentials, CredentialsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let login = match login {
        None => None,
        // A client certificate is the proof of identity: the login Secret then needs no password.
        Some(login) => {
            let password = if client_cert.is_some() {
                Password::Optional
            } else {
                Password::Required
            };
            Some(load_login(&secrets, namespace, login, username, password).await?)
        }
    };
    let (ca_pem, ca_resource_version) = match ca {
        None => (None, None),
        Some(ca) => {
            let ca_secret =
                fetch(&secrets, namespace, &ca.name, || format!("{:?}", ca.key)).await?;
            check_type(&ca_secret, &ca.name, &CA_SECRET)?;
            let pem = bytes_value(&ca_secret, &ca.name, &ca.key, "tls.caSecretRef.key")?;
            (Some(pem.to_vec()), ca_secret.metadata.resource_version)
        }
    };
    let client_cert = match client_cert {
        None => None,
        Some(name) => Some(load_client_cert(&secrets, namespace, name).await?),
    };
    Ok(Credentials {
        login,
        ca_pem,
        ca_resource_version,
        client_cert,
    })
}

async fn load_client_cert(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<ClientCert, CredentialsError> {
    let secret = fetch(secrets, namespace, name, || {
        "\"tls.crt\" and \"tls.key\"".into()
    })
    .await?;
    check_type(&secret, name, &CLIENT_CERT_SECRET)?;
    let field = "tls.clientCertSecretRef";
    Ok(ClientCert {
        cert_pem: bytes_value(&secret, name, "tls.crt", field)?.to_vec(),
        key_pem: SecretString(text_value(&secret, name, "tls.key", field)?),
        secret_name: name.to_owned(),
        secret_resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
    })
}

async fn load_login(
    secrets: &Api<Secret>,
    namespace: &str,
    login: &SecretKeysRef,
    username: Username,
    password: Password,
) -> Result<Login, CredentialsError> {
    let secret = fetch(secrets, namespace, &login.name, || {
        format!("{:?} and {:?}", login.username_key, login.password_key)
    })
    .await?;
    check_type(&secret, &login.name, &LOGIN_SECRET)?;
    let username = match text_value(
        &secret,
        &login.name,
        &login.username_key,
        "credentials.secretRef.usernameKey",
    ) {
        Err(CredentialsError::KeyMissing { .. }) if username == Username::Optional => String::new(),
        read => read?,
    };
    let password = match text_value(
        &secret,
        &login.name,
        &login.password_key,
        "credentials.secretRef.passwordKey",
    ) {
        Err(CredentialsError::KeyMissing { .. }) if password == Password::Optional => String::new(),
        read => read?,
    };
    Ok(Login {
        username,
        password: SecretString(password),
        secret_name: login.name.clone(),
        secret_resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
    })
}

async fn fetch(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
    keys: impl FnOnce() -> String,
) -> Result<Secret, CredentialsError> {
    let what = format!("reading Secret {name:?}");
    match deadline::api(&what, secrets.get_opt(name)).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(CredentialsError::SecretNotFound {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            keys: keys(),
        }),
        Err(source) => Err(CredentialsError::Api {
            name: name.to_owned(),
            source,
        }),
    }
}

/// The Secret types a reference may name, by what it is for.
struct AcceptedTypes {
    purpose: &'static str,
    types: &'static [&'static str],
    /// A prefix of further accepted types (the servicebinding.io family), if any.
    prefix: Option<&'static str>,
    allowed: &'static str,
}

/// A login: generic, basic-auth (which has exactly `username` and `password`), or a
/// servicebinding.io Secret written by another operator. Refusing the other built-in types keeps
/// a DatabaseConnection from sending, say, a ServiceAccount token or a registry credential as a
/// password to whatever server its URI names.
const LOGIN_SECRET: AcceptedTypes = AcceptedTypes {
    purpose: "a database login",
    types: &["Opaque", "kubernetes.io/basic-auth"],
    prefix: Some("servicebinding.io/"),
    allowed: "Opaque or kubernetes.io/basic-auth",
};

const CA_SECRET: AcceptedTypes = AcceptedTypes {
    purpose: "a CA bundle",
    types: &["Opaque", "kubernetes.io/tls"],
    prefix: None,
    allowed: "Opaque or kubernetes.io/tls",
};

/// The type whose keys (`tls.crt`, `tls.key`) the apiserver checks to hold a certificate and key.
const CLIENT_CERT_SECRET: AcceptedTypes = AcceptedTypes {
    purpose: "a client certificate",
    types: &["kubernetes.io/tls"],
    prefix: None,
    allowed: "kubernetes.io/tls",
};

/// A Secret with no type is Opaque, as the apiserver stores it.
fn check_type(
    secret: &Secret,
    name: &str,
    accepted: &AcceptedTypes,
) -> Result<(), CredentialsError> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    let prefixed = accepted.prefix.is_some_and(|p| type_.starts_with(p));
    if accepted.types.contains(&type_) || prefixed {
        return Ok(());
    }
    Err(CredentialsError::TypeUnsupported {
        name: name.to_owned(),
        type_: type_.to_owned(),
        purpose: accepted.purpose,
        allowed: accepted.allowed,
    })
}

fn bytes_value<'a>(
    secret: &'a Secret,
    name: &str,
    key: &str,
    field: &'static str,
) -> Result<&'a [u8], CredentialsError> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|v| v.0.as_slice())
        .ok_or_else(|| CredentialsError::KeyMissing {
            name: name.to_owned(),
            key: key.to_owned(),
            field,
        })
}

fn text_value(
    secret: &Secret,
    name: &str,
    key: &str,
    field: &'static str,
) -> Result<String, CredentialsError> {
    let invalid = |problem| CredentialsError::ValueInvalid {
        name: name.to_owned(),
        key: key.to_owned(),
        problem,
    };
    let bytes = bytes_value(secret, name, key, field)?;
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not valid UTF-8"))?;
    // A trailing newline is the classic `echo pw | base64` mistake; a login never ends in one.
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(entries: &[(&str, &[u8])]) -> Secret {
        let data: BTreeMap<String, ByteString> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect();
        Secret {
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn same_references_ignores_versions_but_not_names_keys_or_the_ca() {
        let login = SecretKeysRef {
            name: "login".into(),
            username_key: "username".into(),
            password_key: "password".into(),
            namespace: None,
        };
        let ca = CaSecretRef {
            name: "ca".into(),
            key: "ca.crt".into(),
            namespace: None,
        };
        let read = SecretInputs::new(Some((&login, "7")), Some((&ca, "3")), None);
        assert!(read.same_references(Some(&login), Some(&ca), None));
        assert!(!read.same_references(Some(&login), None, None));
        assert!(!read.same_references(None, Some(&ca), None));
        let renamed = SecretKeysRef {
            name: "login-v2".into(),
            ..login.clone()
        };
        assert!(!read.same_references(Some(&renamed), Some(&ca), None));
        let other_key = CaSecretRef {
            key: "bundle.pem".into(),
            ..ca.clone()
        };
        assert!(!read.same_references(Some(&login), Some(&other_key), None));
        let no_ca = SecretInputs::new(Some((&login, "7")), None, None);
        assert!(!no_ca.same_references(Some(&login), Some(&ca), None));
        let nothing = SecretInputs::new(None, None, None);
        assert!(nothing.same_references(None, None, None));
        assert!(!nothing.same_references(Some(&login), None, None));
        let with_cert = SecretInputs::new(None, None, Some(("client", "4")));
        assert!(with_cert.same_references(None, None, Some("client")));
        assert!(!with_cert.same_references(None, None, Some("other-client")));
        assert!(!with_cert.same_references(None, None, None));
    }

    #[test]
    fn reads_text_and_strips_a_trailing_newline() {
        let s = secret(&[("password", b"s3cret\n")]);
        assert_eq!(text_value(&s, "db", "password", "f").unwrap(), "s3cret");
    }

    #[test]
    fn missing_key_names_the_key_and_the_field_to_fix() {
        let s = secret(&[("user", b"neo4j")]);
        let err =
            text_value(&s, "db", "username", "credentials.secretRef.usernameKey").unwrap_err();
        assert_eq!(err.reason(), "SecretKeyMissing");
        let message = err.to_string();
        assert!(
            message.contains("\"username\"") && message.contains("usernameKey"),
            "{message}"
        );
    }

    #[test]
    fn binary_and_empty_values_are_rejected_without_echoing_them() {
        let s = secret(&[("password", &[0xff, 0xfe, 0x00]), ("username", b"")]);
        let binary = text_value(&s, "db", "password", "f").unwrap_err();
        assert_eq!(binary.reason(), "SecretValueInvalid");
        assert!(binary.to_string().contains("UTF-8"));
        let empty = text_value(&s, "db", "username", "f").unwrap_err();
        assert!(empty.to_string().contains("empty"));
    }

    #[test]
    fn logins_come_only_from_secret_types_that_hold_one() {
        let typed = |type_: Option<&str>| Secret {
            type_: type_.map(str::to_owned),
            ..secret(&[("password", b"pw")])
        };
        for ok in [
            None,
            Some("Opaque"),
            Some("kubernetes.io/basic-auth"),
            Some("servicebinding.io/postgresql"),
        ] {
            assert!(
                check_type(&typed(ok), "db", &LOGIN_SECRET).is_ok(),
                "{ok:?}"
            );
        }
        for refused in [
            "kubernetes.io/service-account-token",
            "kubernetes.io/dockerconfigjson",
            "kubernetes.io/tls",
        ] {
            let err = check_type(&typed(Some(refused)), "db", &LOGIN_SECRET).unwrap_err();
            assert_eq!(err.reason(), "SecretTypeUnsupported");
            assert!(err.needs_user());
            assert!(err.to_string().contains(refused), "{err}");
        }
        assert!(check_type(&typed(Some("kubernetes.io/tls")), "ca", &CA_SECRET).is_ok());
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let creds = Credentials::login("neo4j", "hunter2", "db", "1");
        let printed = format!("{creds:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("<redacted>"),
            "{printed}"
        );
    }

    #[test]
    fn fingerprint_changes_with_the_password() {
        let one = Credentials::login("neo4j", "one", "db", "1");
        let two = Credentials::login("neo4j", "two", "db", "1");
        assert_ne!(one.fingerprint(), two.fingerprint());
        assert_ne!(one.fingerprint(), Credentials::default().fingerprint());
    }
}
