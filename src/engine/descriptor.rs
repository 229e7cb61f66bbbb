//! What an engine says about itself. Everything outside an engine's module that differs per
//! engine (the CRD's URI, TLS and section rules, URI parsing, the reasons metrics know, the
//! README's engine table) is derived from these descriptions, so an engine is wired by naming
//! its module in `engines!` (in `engine/mod.rs`) and nowhere else.

use std::{fmt, sync::Arc};

use url::Url;

use super::{EngineError, FailureClass, Pool};
use crate::{
    credentials::Credentials,
    settings::{ConnectionSettings, SpecError, TlsMode},
};

/// The CRD pattern for `host[:port]` after `scheme://`: a DNS name or IPv4 address (IDNs in
/// their `xn--` form), and a port from 0 to 65535. The URL parser refuses other characters in a
/// host and larger ports, so the apiserver must too (tests/fuzz_parsing.rs checks that what the
/// pattern admits, the operator accepts).
#[macro_export]
macro_rules! uri_host_port_pattern {
    () => {
        concat!(r"[A-Za-z0-9._-]+", $crate::uri_port_pattern!())
    };
}

/// The CRD pattern for an optional `:port`, 0 to 65535.
#[macro_export]
macro_rules! uri_port_pattern {
    () => {
        r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
    };
}

pub struct Descriptor {
    /// The value of `spec.engine`.
    pub name: &'static str,
    /// What users call the servers it speaks to, for documentation.
    pub product: &'static str,
    pub uri: UriShape,
    /// Whether `spec.credentials` must name a login Secret.
    pub login: Login,
    /// Optional spec sections this engine acts on; the CRD refuses them for other engines.
    pub sections: &'static [&'static Section],
    /// CEL rules of this engine's own on the spec, e.g. between its section and another field.
    pub rules: &'static [SpecRule],
    /// Failure reasons of this engine's own, beyond those every engine shares.
    pub reasons: &'static [&'static Reason],
    pub open: Open,
}

/// Builds a pool; no network I/O (a wrong password shows on the first probe).
pub type Open = fn(&ConnectionSettings, &Credentials) -> Result<Arc<dyn Pool>, EngineError>;

/// How `spec.uri` is written for an engine, and how its TLS mode is chosen.
pub struct UriShape {
    /// Schemes accepted, without `://`.
    pub schemes: &'static [&'static str],
    pub default_port: u16,
    /// Whether the URI may list several hosts, comma-separated (`h1:5432,h2:5433`).
    pub several_hosts: bool,
    /// A URI to show in messages.
    pub example: &'static str,
    /// An RE2 pattern the whole URI must match; the CRD's rule on `spec.uri`.
    pub pattern: &'static str,
    /// The apiserver's message when `pattern` does not match.
    pub message: &'static str,
    /// An RE2 pattern (searched in the URI) for URIs whose TLS certificate is verified: only
    /// those may carry `spec.tls`.
    pub verifying: &'static str,
    /// Where `spec.tls` applies, completing "spec.tls applies only ...".
    pub tls_applies: &'static str,
    /// Reads what follows the host and port: the TLS mode the URI asks for, whether the host
    /// name is checked, and the database it names.
    pub parse: fn(&Url) -> Result<UriOptions, SpecError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// A database login: `spec.credentials` is required.
    Required,
    /// The server may need no login (an HTTP endpoint): `spec.credentials` may be left out, and
    /// its Secret may hold a password (or token) without a username.
    Optional,
}

/// What an engine reads from its URI beyond host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriOptions {
    /// `Plain`, `Verified(None)` or `InsecureSkipVerify`; `spec.tls` refines `Verified`.
    pub tls: TlsMode,
    /// False only where the URI asks for the chain alone (PostgreSQL's `sslmode=verify-ca`).
    pub verify_hostname: bool,
    pub database: Option<String>,
}

/// An optional spec section, as the CRD's rules see it.
pub struct Section {
    /// The field as users write it, for messages and the README.
    pub field: &'static str,
    /// Its path relative to `spec`, for the rule's `fieldPath`.
    pub path: &'static str,
    /// A CEL expression on the spec, true when the section is set and not empty.
    pub present: &'static str,
}

/// A CEL rule on the spec that holds for one engine's connections (the CRD adds the engine
/// guard).
pub struct SpecRule {
    /// A CEL expression on the spec.
    pub rule: &'static str,
    pub message: &'static str,
    /// The field it is about, relative to `spec`.
    pub path: &'static str,
}

/// A failure reason of one engine's own.
#[derive(Debug, PartialEq, Eq)]
pub struct Reason {
    pub name: &'static str,
    pub class: FailureClass,
    /// Whether the server answered (so it counts as reachable).
    pub server_answered: bool,
    /// What the user should do next.
    pub hint: &'static str,
}

impl Descriptor {
    /// The schemes as users write them: `bolt://, bolt+s://`.
    pub fn scheme_list(&self) -> String {
        self.uri
            .schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Engines are registered once each, so their names tell them apart.
impl PartialEq for Descriptor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Descriptor {}
