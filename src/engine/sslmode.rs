//! The path and query of a SQL engine's URI: `[/database][?sslmode=MODE]`, nothing else.
//!
//! `sslmode` follows libpq's names: `disable` (the default, as `bolt://` is for Neo4j) is plain
//! TCP; `require` encrypts without checking the certificate (reported like
//! `insecureSkipVerify`); `verify-ca` checks that the certificate chains to a trusted CA;
//! `verify-full` also checks that it names the host. libpq's `prefer` and `allow` are refused:
//! they fall back silently, and status could not say which one happened.

use url::Url;

use super::descriptor::UriOptions;
use crate::settings::{SpecError, TlsMode};

/// The CRD pattern for what `parse` reads after `host:port`: an optional `/database` (the rule
/// of `spec.database`) and an optional `?sslmode=`, to the end.
#[macro_export]
macro_rules! sslmode_uri_tail_pattern {
    () => {
        concat!(
            $crate::database_path_pattern!(),
            r"(\?",
            $crate::sslmode_pattern!(),
            ")?$"
        )
    };
}

/// The CRD pattern for an optional `/database` (the rule of `spec.database`).
#[macro_export]
macro_rules! database_path_pattern {
    () => {
        r"(/([A-Za-z0-9][A-Za-z0-9._\-]{0,62})?)?"
    };
}

/// The CRD pattern for the `sslmode=` parameter.
#[macro_export]
macro_rules! sslmode_pattern {
    () => {
        r"sslmode=(disable|require|verify-ca|verify-full)"
    };
}

/// URIs whose certificate is verified (searched in the URI).
pub const VERIFYING: &str = r"[?&]sslmode=verify-(ca|full)(&|$)";

pub const TLS_APPLIES: &str = "with sslmode=verify-ca or sslmode=verify-full in spec.uri (sslmode=require skips verification already)";

/// Reads `[/database][?sslmode=MODE]`; `unexpected` is the engine's message for anything else.
pub fn parse(url: &Url, unexpected: &'static str) -> Result<UriOptions, SpecError> {
    if url.fragment().is_some() {
        return Err(SpecError::UnexpectedUriParts(unexpected));
    }
    let database = match url.path().strip_prefix('/') {
        None | Some("") => None,
        Some(name) if is_database_name(name) => Some(name.to_owned()),
        Some(_) => return Err(SpecError::InvalidDatabaseInUri),
    };
    let mut sslmode = None;
    for (key, value) in url.query_pairs() {
        if key != "sslmode" || sslmode.is_some() {
            return Err(SpecError::UnexpectedUriParts(unexpected));
        }
        sslmode = Some(value);
    }
    let (tls, verify_hostname) = match sslmode.as_deref().unwrap_or("disable") {
        "disable" => (TlsMode::Plain, true),
        "require" => (TlsMode::InsecureSkipVerify, true),
        "verify-ca" => (TlsMode::Verified(None), false),
        "verify-full" => (TlsMode::Verified(None), true),
        "prefer" => return Err(SpecError::SslModeFallback("prefer")),
        "allow" => return Err(SpecError::SslModeFallback("allow")),
        _ => return Err(SpecError::UnsupportedSslMode),
    };
    Ok(UriOptions {
        tls,
        verify_hostname,
        database,
    })
}

/// The same rule as `spec.database`'s schema: `^[A-Za-z0-9][A-Za-z0-9._-]*$`, 1 to 63 characters.
fn is_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
