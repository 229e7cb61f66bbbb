//! The CRD's per-engine CEL rules, derived from the engines' descriptions: the shape of
//! `spec.uri`, where `spec.tls` applies, and which optional sections each engine accepts.
//! `validate` evaluates the same rules offline, so it follows without a change.

use kube::core::{Message, Rule};
use schemars::Schema;

use super::{
    ENGINES,
    descriptor::{Login, Section},
};

/// The schema of `spec.engine`: one of the registered names.
pub fn engine_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    let names: Vec<&str> = ENGINES.iter().map(|e| e.name).collect();
    schemars::json_schema!({
        "type": "string",
        "enum": names,
    })
}

/// Adds every engine's rules to the spec's schema (a schemars `transform`).
pub fn add_to_spec(schema: &mut Schema) {
    for rule in spec_rules() {
        kube::core::validate(schema, rule).expect("a rule serializes");
    }
}

fn spec_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for engine in ENGINES {
        let name = engine.name;
        rules.push(
            Rule::new(format!(
                "self.engine != '{name}' || self.uri.matches('{}')",
                cel_string(engine.uri.pattern)
            ))
            .message(engine.uri.message)
            .field_path(".uri"),
        );
        for own in engine.rules {
            rules.push(
                Rule::new(format!("self.engine != '{name}' || ({})", own.rule))
                    .message(own.message)
                    .field_path(own.path),
            );
        }
        rules.push(
            Rule::new(format!(
                "self.engine != '{name}' || !has(self.tls) || self.uri.matches('{}')",
                cel_string(engine.uri.verifying)
            ))
            .message(Message::Message(format!(
                "for engine {name}, spec.tls applies only {}",
                engine.uri.tls_applies
            )))
            .field_path(".tls"),
        );
    }
    let optional: Vec<&str> = ENGINES
        .iter()
        .filter(|e| e.login == Login::Optional)
        .map(|e| e.name)
        .collect();
    let required: Vec<&str> = ENGINES
        .iter()
        .filter(|e| e.login == Login::Required)
        .map(|e| e.name)
        .collect();
    rules.push(
        Rule::new(if optional.is_empty() {
            "has(self.credentials)".to_owned()
        } else {
            format!("has(self.credentials) || {}", engine_in(&optional))
        })
        .message(Message::Message(format!(
            "spec.credentials is required for engine {}",
            super::or_list(&required)
        )))
        .field_path(".credentials"),
    );
    for (section, engines) in sections() {
        rules.push(
            Rule::new(format!("!({}) || {}", section.present, engine_in(&engines)))
                .message(Message::Message(format!(
                    "{} is only for engine {}",
                    section.field,
                    super::or_list(&engines)
                )))
                .field_path(section.path),
        );
    }
    rules
}

/// `self.engine in ['a', 'b']`.
fn engine_in(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("self.engine in [{}]", quoted.join(", "))
}

/// Each optional section once, with the engines that accept it, in registration order.
pub fn sections() -> Vec<(&'static Section, Vec<&'static str>)> {
    let mut found: Vec<(&'static Section, Vec<&'static str>)> = Vec::new();
    for engine in ENGINES {
        for section in engine.sections {
            match found.iter_mut().find(|(s, _)| s.field == section.field) {
                Some((_, names)) => names.push(engine.name),
                None => found.push((section, vec![engine.name])),
            }
        }
    }
    found
}

/// An RE2 pattern as the body of a single-quoted CEL string.
fn cel_string(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_strings_keep_the_pattern_after_unescaping() {
        assert_eq!(cel_string(r"^bolt\+s://[^']$"), r"^bolt\\+s://[^\']$");
    }

    #[test]
    fn every_engine_gets_a_uri_and_a_tls_rule_and_every_section_one_rule() {
        let rules = spec_rules();
        let own: usize = ENGINES.iter().map(|e| e.rules.len()).sum();
        assert_eq!(rules.len(), 2 * ENGINES.len() + own + 1 + sections().len());
        for engine in ENGINES {
            let guard = format!("self.engine != '{}'", engine.name);
            assert_eq!(
                rules.iter().filter(|r| r.rule.starts_with(&guard)).count(),
                2 + engine.rules.len(),
                "{}",
                engine.name
            );
        }
    }

    #[test]
    fn a_section_names_the_engines_that_accept_it() {
        let (_, engines) = sections()
            .into_iter()
            .find(|(s, _)| s.field == "spec.schema.extensions")
            .expect("postgres declares extensions");
        assert!(engines.contains(&"postgres"));
        assert!(!engines.contains(&"neo4j"));
    }
}
