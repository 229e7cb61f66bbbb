//! `spec.http`: how an `http` connection judges its endpoint's answer and sends its login.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// How the health endpoint is judged, for engine `http`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    /// Status codes that count as healthy; any 2xx when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "status_codes")]
    pub expect_status: Vec<u16>,
    /// A field of the JSON answer that must hold a value, e.g. `{field: status, equals: healthy}`
    /// for Graphiti's `/healthcheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_json: Option<JsonExpectation>,
    /// How the login from spec.credentials is sent: `basic` (the default when credentials are
    /// set) or `bearer` (the Secret's password key holds the token; no username needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "auth_schema")]
    pub auth: Option<HttpAuth>,
}

/// A field of the JSON answer and the value it must hold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonExpectation {
    /// The field, with `.` between the keys of nested objects: `status`, `checks.database`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"))]
    pub field: String,
    /// The value, as text: a JSON string is compared as it is, a number or boolean as written in
    /// JSON (`200`, `true`).
    #[schemars(length(max = 256))]
    pub equals: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HttpAuth {
    Basic,
    Bearer,
}

/// schemars would list `null` among an optional enum's values, which kubectl's client-side
/// validation refuses; leaving the field out is how it is unset.
fn auth_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["basic", "bearer"],
    })
}

fn status_codes(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {"type": "integer", "minimum": 100, "maximum": 599},
        "x-kubernetes-list-type": "set",
    })
}
