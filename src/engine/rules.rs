//! The CRD's per-engine parts, derived from the engines' descriptions: the values of
//! `spec.engine`, the shape of `spec.uri`, where `spec.tls` applies, whether a login is needed,
//! and which optional sections each engine accepts. `crd` adds them to the spec's schema;
//! `validate` evaluates the same rules offline, so it follows without a change.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;

use super::{
    ENGINES,
    descriptor::{Login, Section},
};

fn rule(expression: String, message: String, path: &str) -> ValidationRule {
    ValidationRule {
        rule: expression,
        message: Some(message),
        field_path: Some(path.to_owned()),
        ..ValidationRule::default()
    }
}

/// Every engine's rules on the spec.
pub fn spec_rules() -> Vec<ValidationRule> {
    let mut rules = Vec::new();
    for engine in ENGINES {
        let name = engine.name;
        rules.push(rule(
            format!(
                "self.engine != '{name}' || self.uri.matches('{}')",
                cel_string(engine.uri.pattern)
            ),
            engine.uri.message.to_owned(),
            ".uri",
        ));
        for own in engine.rules {
            rules.push(rule(
                format!("self.engine != '{name}' || ({})", own.rule),
                own.message.to_owned(),
                own.path,
            ));
        }
        rules.push(rule(
            format!(
                "self.engine != '{name}' || !has(self.tls) || self.uri.matches('{}')",
                cel_string(engine.uri.verifying)
            ),
            format!(
                "for engine {name}, spec.tls applies only {}",
                engine.uri.tls_applies
            ),
            ".tls",
        ));
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
    rules.push(rule(
        if optional.is_empty() {
            "has(self.credentials)".to_owned()
        } else {
            format!("has(self.credentials) || {}", engine_in(&optional))
        },
        format!(
            "spec.credentials is required for engine {}",
            super::or_list(&required)
        ),
        ".credentials",
    ));
    for (section, engines) in sections() {
        rules.push(rule(
            format!("!({}) || {}", section.present, engine_in(&engines)),
            format!(
                "{} is only for engine {}",
                section.field,
                super::or_list(&engines)
            ),
            section.path,
        ));
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
