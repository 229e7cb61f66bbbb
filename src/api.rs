//! The `DatabaseConnection` API (`dbconn.dev/v1alpha1`): spec and status types, and the CEL
//! rules that let the apiserver reject a malformed manifest at `kubectl apply` time.
//! Doc comments here become the field descriptions of `kubectl explain`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A connection to a database that the operator keeps checked: it reads the credentials from a
/// Secret, keeps a connection pool, probes the server on an interval and reports what it finds
/// in `status.conditions`.
// clippy reads the repeated keys of separate `printcolumn(...)` entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbconn.dev",
    version = "v1alpha1",
    kind = "DatabaseConnection",
    namespaced,
    shortname = "dbconn",
    shortname = "dbc",
    status = "DatabaseConnectionStatus",
    derive = "PartialEq",
    doc = "A database connection the operator keeps checked; `kubectl explain dbconn.spec` documents each field.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.server.version"
    ),
    printcolumn(
        name = "Latency",
        type_ = "string",
        json_path = ".status.probe.latency",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(BINDING_NOT_CREDENTIALS_RULE).message("spec.binding.secretName must not be the credentials Secret").field_path(".binding.secretName"))]
// The values of `engine` and the per-engine rules (URI shape, where `tls` applies, which
// sections an engine accepts) come from the engines' descriptions: `crd` adds them.
#[serde(rename_all = "camelCase")]
pub struct DatabaseConnectionSpec {
    /// The database engine; the README's engine table lists each one's URI schemes, TLS choices
    /// and the optional sections it accepts.
    pub engine: String,

    /// Where the server listens, without credentials, in the engine's scheme: e.g.
    /// `bolt://host:7687` (Neo4j; `bolt+s://` verifies TLS, `bolt+ssc://` accepts any
    /// certificate, shown as a warning; `neo4j://` routing is not supported) or
    /// `postgres://host:5432/database?sslmode=verify-full` (`sslmode` is `disable`, the default,
    /// `require`, encrypted with any certificate, `verify-ca` or `verify-full`).
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,

    /// The database to use; the server's default database when empty. For SQL engines it may be
    /// the URI path instead; if both are set they must be equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    )]
    pub database: Option<String>,

    /// Where the username and password come from; required except for engines that may be
    /// reached without a login (the README's engine table says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSpec>,

    /// How the server's certificate is checked, for the TLS schemes (PostgreSQL: `sslmode=verify-ca`
    /// or `verify-full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Connection pool settings.
    #[serde(default)]
    pub pool: PoolSpec,

    /// How often and how patiently the server is probed.
    #[serde(default)]
    pub health_check: HealthCheckSpec,

    /// Backoff between attempts after a failed probe.
    #[serde(default)]
    pub retry: RetrySpec,

    /// Stop probing and close the pool; the last status is kept.
    #[serde(default)]
    pub suspend: bool,

    /// Constraints and indexes (Neo4j), or extensions (PostgreSQL), the operator keeps in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaSpec>,

    /// How an `http` connection judges its health endpoint's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::engine::http::spec::HttpSpec>,

    /// Publish the verified connection details as a Secret in the servicebinding.io layout,
    /// for applications to mount. It follows credential rotations and is owned by (and garbage
    /// collected with) this DatabaseConnection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingSpec>,
}

/// Where to publish the binding Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingSpec {
    /// Name of the Secret to write; `<name>-binding` when empty. It must not be the
    /// credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub secret_name: Option<String>,
}

const BINDING_NOT_CREDENTIALS_RULE: &str = "!has(self.binding) || !has(self.binding.secretName) || !has(self.credentials) || self.binding.secretName != self.credentials.secretRef.name";

/// A reference to the Secret that holds the login, in the connection's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    pub secret_ref: SecretKeysRef,
}

/// A Secret in the same namespace, and the keys to read from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeysRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Key that holds the username.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub username_key: String,
    /// Key that holds the password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub password_key: String,
    /// Leave it out. Secrets are read only from the DatabaseConnection's own namespace; a
    /// reference to another namespace is refused (reason `SecretRefCrossNamespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}

/// Certificate checks for TLS connections.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.caSecretRef) && self.insecureSkipVerify)").message("set either caSecretRef or insecureSkipVerify, not both"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret in the same namespace holding the PEM CA bundle that signed the server's
    /// certificate; the system roots are used when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,
    /// Accept any server certificate. Only for testing: it is reported as a warning condition.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A Secret of type `kubernetes.io/tls` in the same namespace (keys `tls.crt`, `tls.key`):
    /// the client certificate to present, for servers that authenticate clients by it
    /// (PostgreSQL `cert`, MySQL `REQUIRE X509`). Not for neo4j: its driver cannot send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<ClientCertSecretRef>,
}

/// A `kubernetes.io/tls` Secret holding a client certificate and its key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertSecretRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// A Secret key holding a PEM CA bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
    /// Leave it out. Secrets are read only from the DatabaseConnection's own namespace; a
    /// reference to another namespace is refused (reason `SecretRefCrossNamespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

// Duration rules run only on values of the duration pattern: a malformed one already has the
// pattern's error, and CEL's `duration()` on it would add a second, cryptic one.
const POOL_TIMEOUTS_RULE: &str = r"!(self.connectionTimeout.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') && self.acquisitionTimeout.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')) || (duration(self.connectionTimeout) > duration('0s') && duration(self.acquisitionTimeout) > duration('0s'))";
const POOL_LIFETIMES_RULE: &str = r"!(self.maxLifetime.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') && self.idleTimeout.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')) || (duration(self.maxLifetime) >= duration('1s') && duration(self.idleTimeout) >= duration('1s'))";
const INTERVAL_RULE: &str = r"!self.interval.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') || duration(self.interval) >= duration('1s')";
const TIMEOUT_RULE: &str = r"!self.timeout.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') || duration(self.timeout) > duration('0s')";
const INITIAL_DELAY_RULE: &str = r"!self.initialDelay.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') || duration(self.initialDelay) > duration('0s')";
const RETRY_BOUNDS_RULE: &str = r"!(self.initialDelay.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$') && self.maxDelay.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')) || duration(self.maxDelay) >= duration(self.initialDelay)";

/// Connection pool settings, passed to the driver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(POOL_TIMEOUTS_RULE).message("pool timeouts must be greater than zero"))]
#[x_kube(validation = Rule::new(POOL_LIFETIMES_RULE).message("pool maxLifetime and idleTimeout must be at least 1s"))]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// Most connections the pool opens. Connections are opened on demand, so an idle
    /// connection costs one socket. The operator never uses more than 4 at once, so a larger
    /// value opens no more.
    #[serde(default = "default_max_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_size: u32,
    /// Longest wait to open a connection and for each read on it.
    #[serde(default = "default_connection_timeout")]
    pub connection_timeout: Duration,
    /// Longest wait for a free connection from the pool.
    #[serde(default = "default_acquisition_timeout")]
    pub acquisition_timeout: Duration,
    /// Connections older than this are replaced.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: Duration,
    /// Connections unused for longer than this are replaced rather than reused.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Rows fetched per round trip.
    #[serde(default = "default_fetch_size")]
    #[schemars(range(min = 1, max = 100000))]
    pub fetch_size: u32,
}

fn default_max_size() -> u32 {
    50
}
fn default_connection_timeout() -> Duration {
    Duration::new("10s")
}
fn default_acquisition_timeout() -> Duration {
    Duration::new("30s")
}
fn default_max_lifetime() -> Duration {
    Duration::new("30m")
}
fn default_idle_timeout() -> Duration {
    Duration::new("10m")
}
fn default_fetch_size() -> u32 {
    200
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            max_size: default_max_size(),
            connection_timeout: default_connection_timeout(),
            acquisition_timeout: default_acquisition_timeout(),
            max_lifetime: default_max_lifetime(),
            idle_timeout: default_idle_timeout(),
            fetch_size: default_fetch_size(),
        }
    }
}

/// Health check settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(INTERVAL_RULE).message("healthCheck.interval must be at least 1s"))]
#[x_kube(validation = Rule::new(TIMEOUT_RULE).message("healthCheck.timeout must be greater than zero"))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    /// Time between probes while the connection is healthy.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Longest a probe may take before it counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Consecutive failed probes before a connection that was Ready under the current spec
    /// turns not Ready.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// For a PostgreSQL URI listing several hosts: a standby further behind than this makes the
    /// connection `Degraded` (reason `ReplicationLagging`).
    #[serde(default = "default_max_replication_lag")]
    pub max_replication_lag: Duration,
}

fn default_interval() -> Duration {
    Duration::new("30s")
}
fn default_timeout() -> Duration {
    Duration::new("5s")
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_max_replication_lag() -> Duration {
    Duration::new("30s")
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            failure_threshold: default_failure_threshold(),
            max_replication_lag: default_max_replication_lag(),
        }
    }
}

/// Exponential backoff between attempts after a failure, with jitter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(INITIAL_DELAY_RULE).message("retry.initialDelay must be greater than zero"))]
#[x_kube(validation = Rule::new(RETRY_BOUNDS_RULE).message("retry.maxDelay must not be shorter than retry.initialDelay"))]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Wait after the first failure; it doubles with each further failure.
    #[serde(default = "default_initial_delay")]
    pub initial_delay: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
}

fn default_initial_delay() -> Duration {
    Duration::new("1s")
}
fn default_max_delay() -> Duration {
    Duration::new("16s")
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
        }
    }
}

/// Declared Neo4j schema. Statements are built by the operator from these fields, with every
/// identifier quoted; there is no raw Cypher.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaSpec {
    /// Constraints, created when missing. The connection claims (and may prune) only those its
    /// own statement created.
    #[serde(default)]
    #[schemars(length(max = 64), schema_with = "named_list::<ConstraintSpec>")]
    pub constraints: Vec<ConstraintSpec>,
    /// Indexes, created when missing; claimed like constraints.
    #[serde(default)]
    #[schemars(length(max = 64), schema_with = "named_list::<IndexSpec>")]
    pub indexes: Vec<IndexSpec>,
    /// Drop constraints and indexes that the operator created and the manifest no longer
    /// declares. Objects the operator did not create are never dropped, nor are those another
    /// DatabaseConnection on the same server and database still declares.
    #[serde(default)]
    pub prune: bool,
    /// PostgreSQL extensions to install with `CREATE EXTENSION IF NOT EXISTS`, e.g. `pg_trgm`.
    /// Never dropped.
    #[serde(default)]
    #[schemars(length(max = 32), schema_with = "extension_list")]
    pub extensions: Vec<String>,
}

fn extension_list(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z_][a-z0-9_]*$"},
        "x-kubernetes-list-type": "set",
    })
}

/// A constraint on nodes with `label`, or on relationships of `relationshipType`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.label) != has(self.relationshipType)").message("set exactly one of label and relationshipType"))]
#[x_kube(validation = Rule::new("self.type != 'notNull' || size(self.properties) == 1").message("a notNull constraint takes exactly one property"))]
#[serde(rename_all = "camelCase")]
pub struct ConstraintSpec {
    /// Name of the constraint in Neo4j.
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub relationship_type: Option<String>,
    /// Properties, in order.
    #[schemars(length(min = 1, max = 16), schema_with = "identifier_list")]
    pub properties: Vec<String>,
    /// `unique`; `nodeKey` and `notNull` need Neo4j Enterprise.
    #[serde(rename = "type")]
    pub type_: ConstraintType,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConstraintType {
    Unique,
    NodeKey,
    NotNull,
}

/// An index on nodes with `label`, or on relationships of `relationshipType`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.label) != has(self.relationshipType)").message("set exactly one of label and relationshipType"))]
#[x_kube(validation = Rule::new("!(self.type in ['text', 'point']) || size(self.properties) == 1").message("text and point indexes take exactly one property"))]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    /// Name of the index in Neo4j.
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = IDENTIFIER))]
    pub relationship_type: Option<String>,
    /// Properties, in order.
    #[schemars(length(min = 1, max = 16), schema_with = "identifier_list")]
    pub properties: Vec<String>,
    /// `range`, `text`, `point` or `fulltext`.
    #[serde(rename = "type")]
    pub type_: IndexType,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum IndexType {
    Range,
    Text,
    Point,
    Fulltext,
}

/// Letters, digits and underscores, not starting with a digit: safe in Cypher once quoted, and
/// free of anything that could be mistaken for syntax.
const IDENTIFIER: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// A list keyed by `name`, so the apiserver rejects duplicate names.
fn named_list<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<T>>::json_schema(generator);
    schema.insert("maxItems".into(), 64.into());
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["name"]),
    );
    schema
}

fn identifier_list(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 16,
        "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": IDENTIFIER},
    })
}

/// What the operator last observed. Written only when something material changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseConnectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reachable`, `CredentialsValid`, and `Reconciling` / `Stalled` while they apply.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// What the server says it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
    /// The last probe's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeStatus>,
    /// Which version of the credentials Secret is in use (its resourceVersion, never its content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsStatus>,
    /// The declared schema as found on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaStatus>,
    /// The binding Secret, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingStatus>,
    /// Every host of a URI that lists several (PostgreSQL), as the last probe found it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

/// One host of a URI that lists several. The lag figures are refreshed when they move
/// materially (the metrics carry every probe's).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// `host:port` as listed in spec.uri.
    pub address: String,
    /// `primary`, `standby`, or `unknown` when it did not answer.
    pub role: String,
    pub reachable: bool,
    /// Whether sessions go to it (the first member that fits `target_session_attrs`).
    #[serde(default)]
    pub serving: bool,
    /// A standby's replay delay, e.g. `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag: Option<String>,
    /// WAL bytes a standby has yet to replay, measured against the primary's position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_bytes: Option<u64>,
    /// Why it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    /// Name of the Secret holding the binding.
    pub name: String,
}

/// Schema state: what the operator owns and what differs from the manifest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaStatus {
    /// Constraints and indexes the operator created; the only ones `prune` may drop.
    #[serde(default)]
    pub managed: Vec<String>,
    /// Declared items in place and online.
    #[serde(default)]
    pub in_place: u32,
    /// Items that differ from the manifest, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<SchemaProblem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaProblem {
    pub name: String,
    /// `Differs`, `Extra`, `EnterpriseRequired`, `ConstraintViolatedByData`, `IndexPopulating`,
    /// `IndexFailed` or `ApplyFailed`.
    pub reason: String,
    pub message: String,
}

/// Server identity as reported by the server itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// Product name, e.g. `Neo4j Kernel`.
    pub agent: String,
    pub version: String,
    /// e.g. `community` or `enterprise`; for PostgreSQL the build's distribution, if it names one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub edition: String,
}

/// Probe results. `latency` is refreshed only when it moves materially, to keep status writes rare.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// Round-trip time of the last recorded successful probe, e.g. `3ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Failed probes in a row; 0 once a probe succeeds.
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// The credentials Secret in use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsStatus {
    pub secret_name: String,
    pub secret_resource_version: String,
}

/// Conditions are a map keyed by `type`, so that server-side apply merges them per type.
fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

impl DatabaseConnectionSpec {
    /// The Secret named by `spec.tls.clientCertSecretRef`, if any.
    pub fn client_cert_secret(&self) -> Option<&str> {
        let cert = self.tls.as_ref()?.client_cert_secret_ref.as_ref()?;
        Some(&cert.name)
    }
}

/// The Secret the binding is published in: `spec.binding.secretName`, or `<name>-binding`;
/// `None` without `spec.binding`.
impl DatabaseConnection {
    pub fn binding_secret_name(&self) -> Option<String> {
        use kube::ResourceExt;
        let binding = self.spec.binding.as_ref()?;
        Some(
            binding
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{}-binding", self.name_any())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_an_empty_spec_section() {
        let spec: DatabaseConnectionSpec = serde_json::from_value(serde_json::json!({
            "engine": "neo4j",
            "uri": "bolt://db:7687",
            "credentials": {"secretRef": {"name": "db"}}
        }))
        .unwrap();
        assert_eq!(spec.pool.max_size, 50);
        assert_eq!(spec.health_check.interval.as_str(), "30s");
        assert_eq!(spec.retry.max_delay.as_str(), "16s");
        assert_eq!(
            spec.credentials.unwrap().secret_ref.password_key,
            "password"
        );
    }
}
