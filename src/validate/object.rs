//! One `DatabaseConnection` checked in the order the cluster checks it: the CRD's structural
//! schema and its CEL rules (what `kubectl apply` would refuse), then the checks the operator
//! makes in code (what would turn `Ready` False or `SchemaReady` False once applied).
//!
//! The CEL rules are not written twice: they come from the CRD as installed (`crd`: the types'
//! `#[x_kube(validation)]` rules and the engines'), evaluated by kube's client-side CEL
//! (`kube::core::cel`).

use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator, compile_schema};
use serde_json::Value;
use std::collections::HashMap;

use crate::{
    api::DatabaseConnection,
    schema,
    validate::structural::{self, FieldError, Patterns},
};

/// A problem with one field, worded as the apiserver or the operator words it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// Who would refuse it: `apiserver` at apply time, or `operator` once applied.
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Apiserver,
    Operator,
}

/// The apiserver's own line when a type error kept it from running the CEL rules.
const RULES_SKIPPED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The CRD's schema, its patterns and its rules, prepared once for any number of objects.
pub struct Checker {
    schema: Value,
    patterns: Patterns,
    rules: CompiledSchema,
    /// Each rule's message, by its expression.
    messages: HashMap<String, String>,
    cel: Validator,
}

impl Default for Checker {
    fn default() -> Self {
        let crd = crate::crd::definition();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).expect("the CRD schema serializes"))
            .expect("the CRD carries an openAPIV3Schema");
        let mut messages = HashMap::new();
        for_each_rule(&schema, &mut |_, rule| {
            if let (Some(expression), Some(message)) = (
                rule.get("rule").and_then(Value::as_str),
                rule.get("message").and_then(Value::as_str),
            ) {
                messages.insert(expression.to_owned(), message.to_owned());
            }
        });
        Self {
            patterns: Patterns::of(&schema),
            rules: compile_schema(&schema),
            messages,
            cel: Validator::new(),
            schema,
        }
    }
}

impl Checker {
    /// Every problem found in `object`, a `DatabaseConnection` as parsed from YAML.
    pub fn check(&self, object: &Value) -> Vec<Problem> {
        let mut object = object.clone();
        if let Some(fields) = object.as_object_mut() {
            // The status subresource: what a manifest says under `status` is dropped on create.
            fields.remove("status");
        }
        let mut problems = metadata_problems(&object);
        // The apiserver defaults before it validates. The structural checks need no defaults
        // (every default is a valid value and no defaulted field is required); the CEL
        // validator applies them itself, and serde fills the same ones for the operator checks.
        let mut errors = Vec::new();
        structural::check(&self.schema, &object, "", &self.patterns, &mut errors);
        let blocked = errors.iter().any(|e| e.blocking);
        problems.extend(errors.into_iter().map(apiserver));
        if blocked {
            problems.push(Problem {
                field: "<nil>".into(),
                message: format!("Invalid value: null: {RULES_SKIPPED}"),
                source: Source::Apiserver,
            });
            return problems;
        }
        if let Err(failures) = self.cel.validate_compiled(&self.rules, &object, None) {
            problems.extend(failures.iter().map(|failure| Problem {
                field: failure.field_path.clone(),
                message: self.rule_message(failure),
                source: Source::Apiserver,
            }));
        }
        if problems.is_empty() {
            problems.extend(operator_problems(object));
        }
        problems
    }

    /// A failed rule as the apiserver words it. Every rule of this CRD sits on an object (a test
    /// holds it to that), and the apiserver names the type of the rule's scope. A rule that
    /// could not be evaluated keeps the cause, which two CEL implementations word differently.
    fn rule_message(&self, failure: &ValidationError) -> String {
        match failure.kind {
            ErrorKind::ValidationFailure => {
                format!("Invalid value: \"object\": {}", failure.message)
            }
            _ => format!(
                "Invalid value: \"object\": {} evaluating rule: {}",
                failure.message,
                self.messages
                    .get(&failure.rule)
                    .map_or("(no message)", String::as_str)
            ),
        }
    }

    /// Whether every CEL rule of the CRD compiled here, so none is silently left unchecked.
    pub fn all_rules_compiled(&self) -> bool {
        !self.rules.has_errors()
    }
}

/// Calls `visit` with each rule of `x-kubernetes-validations` and the schema it sits on.
fn for_each_rule(schema: &Value, visit: &mut impl FnMut(&Value, &Value)) {
    match schema {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                rules.iter().for_each(|rule| visit(schema, rule));
            }
            map.values().for_each(|v| for_each_rule(v, visit));
        }
        Value::Array(items) => items.iter().for_each(|v| for_each_rule(v, visit)),
        _ => {}
    }
}

fn apiserver(error: FieldError) -> Problem {
    Problem {
        field: error.path,
        message: error.detail,
        source: Source::Apiserver,
    }
}

/// `metadata.name` as the apiserver requires it of a custom resource.
fn metadata_problems(object: &Value) -> Vec<Problem> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let generate = object
        .pointer("/metadata/generateName")
        .and_then(Value::as_str);
    let message = match (name, generate) {
        (None | Some(""), None | Some("")) => {
            "Required value: name or generateName is required".to_owned()
        }
        (Some(name), _) if !is_dns_subdomain(name) => format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ),
        _ => return Vec::new(),
    };
    vec![Problem {
        field: "metadata.name".into(),
        message,
        source: Source::Apiserver,
    }]
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// What the operator refuses in code once the apiserver has stored the object.
fn operator_problems(object: Value) -> Vec<Problem> {
    let operator = |field: &str, message: String| Problem {
        field: field.to_owned(),
        message,
        source: Source::Operator,
    };
    let connection: DatabaseConnection = match serde_json::from_value(object) {
        Ok(connection) => connection,
        Err(error) => return vec![operator("spec", format!("cannot be read: {error}"))],
    };
    let namespace = connection.metadata.namespace.as_deref();
    let spec = &connection.spec;
    let mut problems = Vec::new();
    if let Err(error) = crate::check::connection(&connection, namespace) {
        problems.push(operator(error.field(), error.to_string()));
    }
    if let Some(declared) = &spec.schema
        && let Err(message) = schema::declared(declared)
    {
        problems.push(operator("spec.schema", message));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connection(spec: Value) -> Value {
        json!({
            "apiVersion": "dbconn.dev/v1alpha1",
            "kind": "DatabaseConnection",
            "metadata": {"name": "graph"},
            "spec": spec,
        })
    }

    fn messages(object: Value) -> Vec<String> {
        Checker::default()
            .check(&object)
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    #[test]
    fn every_rule_of_the_crd_compiles_client_side() {
        assert!(Checker::default().all_rules_compiled());
    }

    #[test]
    fn every_rule_sits_on_an_object_as_rule_message_assumes() {
        let checker = Checker::default();
        let mut scopes = Vec::new();
        for_each_rule(&checker.schema, &mut |schema, _| {
            scopes.push(schema.get("type").cloned())
        });
        assert!(scopes.len() >= 10, "{scopes:?}");
        assert!(
            scopes.iter().all(|t| *t == Some(json!("object"))),
            "{scopes:?}"
        );
    }

    /// `check` runs the structural checks on the object as written, not defaulted; that is the
    /// apiserver's answer only while no field with a default is also required.
    #[test]
    fn no_defaulted_field_is_required() {
        fn walk(schema: &Value, path: &str, clashes: &mut Vec<String>) {
            let Some(map) = schema.as_object() else {
                return;
            };
            if let (Some(required), Some(properties)) = (
                map.get("required").and_then(Value::as_array),
                map.get("properties").and_then(Value::as_object),
            ) {
                for key in required.iter().filter_map(Value::as_str) {
                    if properties
                        .get(key)
                        .is_some_and(|p| p.get("default").is_some())
                    {
                        clashes.push(format!("{path}.{key}"));
                    }
                }
            }
            for (key, value) in map {
                walk(value, &format!("{path}.{key}"), clashes);
            }
        }
        let mut clashes = Vec::new();
        walk(&Checker::default().schema, "", &mut clashes);
        assert!(clashes.is_empty(), "{clashes:?}");
    }

    #[test]
    fn a_malformed_duration_has_the_patterns_error_alone() {
        let bad = connection(json!({
            "engine": "neo4j", "uri": "bolt://db",
            "credentials": {"secretRef": {"name": "db"}},
            "healthCheck": {"interval": "soon"},
            "retry": {"maxDelay": "later"},
        }));
        let found = messages(bad);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().all(|m| m.contains("in body should match")),
            "{found:?}"
        );
    }

    #[test]
    fn a_good_manifest_has_no_problem() {
        let ok = connection(json!({
            "engine": "neo4j", "uri": "bolt://db:7687",
            "credentials": {"secretRef": {"name": "db"}},
        }));
        assert_eq!(messages(ok), Vec::<String>::new());
    }

    #[test]
    fn cel_rules_come_from_the_crd_with_their_messages() {
        let bad = connection(json!({
            "engine": "neo4j", "uri": "http://db",
            "credentials": {"secretRef": {"name": "db"}},
            "healthCheck": {"interval": "0s"},
        }));
        let found = messages(bad);
        assert!(
            found.iter().any(|m| m.starts_with("spec.uri: ")
                && m.contains("for engine neo4j, uri must look like bolt://host:7687")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("healthCheck.interval must be at least 1s")),
            "{found:?}"
        );
    }

    #[test]
    fn a_type_error_skips_the_rules_as_the_apiserver_does() {
        let bad = connection(json!({
            "engine": "neo4j", "uri": "http://db",
            "credentials": {"secretRef": {"name": "db"}},
            "pool": {"maxSize": "many"},
        }));
        let found = messages(bad);
        assert!(found[0].starts_with("spec.pool.maxSize: Invalid value: \"string\""));
        assert!(found.iter().any(|m| m.contains(RULES_SKIPPED)));
        assert!(!found.iter().any(|m| m.contains("uri must look like")));
    }

    #[test]
    fn operator_checks_run_once_the_apiserver_would_accept() {
        let mut cross = connection(json!({
            "engine": "neo4j", "uri": "bolt://db:7687",
            "credentials": {"secretRef": {"name": "db", "namespace": "other"}},
        }));
        cross["metadata"]["namespace"] = json!("team");
        let problems = Checker::default().check(&cross);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].source, Source::Operator);
        assert_eq!(problems[0].field, "spec.credentials.secretRef.namespace");

        let shared_name = connection(json!({
            "engine": "neo4j", "uri": "bolt://db:7687",
            "credentials": {"secretRef": {"name": "db"}},
            "schema": {
                "constraints": [{"name": "x", "label": "A", "properties": ["id"], "type": "unique"}],
                "indexes": [{"name": "x", "label": "A", "properties": ["id"], "type": "range"}],
            },
        }));
        let found = messages(shared_name);
        assert!(
            found[0].starts_with("spec.schema: ") && found[0].contains("used twice"),
            "{found:?}"
        );
    }

    #[test]
    fn names_follow_the_apiservers_rule() {
        let mut bad = connection(json!({
            "engine": "neo4j", "uri": "bolt://db",
            "credentials": {"secretRef": {"name": "db"}},
        }));
        bad["metadata"]["name"] = json!("Graph_1");
        assert!(messages(bad)[0].starts_with("metadata.name: Invalid value: \"Graph_1\""));
    }
}
