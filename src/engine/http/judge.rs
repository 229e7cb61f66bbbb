//! Whether an answer is healthy, by `spec.http`: pure, so every rule is tested without a server.

use serde_json::Value;

use super::spec::{HttpSpec, JsonExpectation};

/// Why an answer is not healthy.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// 401 or 403 where `expectStatus` does not list it: the login was refused or is missing.
    Refused(u16),
    /// Another status `expectStatus` (any 2xx by default) does not accept.
    Status(u16),
    /// The JSON check failed; says what was found.
    Response(String),
}

/// The status first (a refused login is told apart), then the JSON field, if one is expected.
pub fn judge(spec: &HttpSpec, status: u16, body: &[u8]) -> Verdict {
    let accepted = if spec.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        spec.expect_status.contains(&status)
    };
    if !accepted {
        return match status {
            401 | 403 => Verdict::Refused(status),
            _ => Verdict::Status(status),
        };
    }
    match &spec.expect_json {
        None => Verdict::Healthy,
        Some(expected) => json_verdict(expected, body),
    }
}

fn json_verdict(expected: &JsonExpectation, body: &[u8]) -> Verdict {
    let Ok(document) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Response("the answer is not JSON".into());
    };
    let found = expected
        .field
        .split('.')
        .try_fold(&document, |value, key| value.get(key));
    let Some(found) = found else {
        return Verdict::Response(format!("the answer has no field {:?}", expected.field));
    };
    let text = match found {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text == expected.equals {
        return Verdict::Healthy;
    }
    Verdict::Response(format!(
        "field {:?} is {}, expected {:?}",
        expected.field,
        shorten(&found.to_string()),
        expected.equals
    ))
}

/// At most 80 characters of a found value, for a condition message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expecting(field: &str, equals: &str) -> HttpSpec {
        HttpSpec {
            expect_json: Some(JsonExpectation {
                field: field.into(),
                equals: equals.into(),
            }),
            ..HttpSpec::default()
        }
    }

    #[test]
    fn any_2xx_is_healthy_by_default_and_a_refusal_is_told_apart() {
        let spec = HttpSpec::default();
        assert_eq!(judge(&spec, 204, b""), Verdict::Healthy);
        assert_eq!(judge(&spec, 503, b""), Verdict::Status(503));
        assert_eq!(judge(&spec, 301, b""), Verdict::Status(301));
        assert_eq!(judge(&spec, 401, b""), Verdict::Refused(401));
        assert_eq!(judge(&spec, 403, b""), Verdict::Refused(403));
    }

    #[test]
    fn listed_codes_replace_the_2xx_default() {
        let spec = HttpSpec {
            expect_status: vec![200, 401],
            ..HttpSpec::default()
        };
        assert_eq!(judge(&spec, 401, b""), Verdict::Healthy);
        assert_eq!(judge(&spec, 204, b""), Verdict::Status(204));
    }

    #[test]
    fn a_json_field_must_hold_the_value() {
        let spec = expecting("status", "healthy");
        assert_eq!(
            judge(&spec, 200, br#"{"status":"healthy"}"#),
            Verdict::Healthy
        );
        assert_eq!(
            judge(&spec, 200, br#"{"status":"unhealthy"}"#),
            Verdict::Response(r#"field "status" is "unhealthy", expected "healthy""#.into())
        );
        assert_eq!(
            judge(&spec, 200, b"<html>"),
            Verdict::Response("the answer is not JSON".into())
        );
        assert_eq!(
            judge(&spec, 200, br#"{"state":"healthy"}"#),
            Verdict::Response(r#"the answer has no field "status""#.into())
        );
        // The status is judged first.
        assert_eq!(judge(&spec, 503, br#"{"status":"healthy"}"#), Verdict::Status(503));
    }

    #[test]
    fn nested_fields_and_non_string_values_compare_as_json_text() {
        let body = br#"{"checks":{"database":{"up":true,"latency":3}}}"#;
        assert_eq!(judge(&expecting("checks.database.up", "true"), 200, body), Verdict::Healthy);
        assert_eq!(judge(&expecting("checks.database.latency", "3"), 200, body), Verdict::Healthy);
        assert!(matches!(
            judge(&expecting("checks.database.up", "yes"), 200, body),
            Verdict::Response(_)
        ));
    }

    #[test]
    fn a_long_value_is_shortened_in_the_message() {
        let long = format!(r#"{{"status":"{}"}}"#, "x".repeat(500));
        let Verdict::Response(message) = judge(&expecting("status", "ok"), 200, long.as_bytes())
        else {
            panic!("not healthy");
        };
        assert!(message.len() < 200, "{message}");
    }
}
