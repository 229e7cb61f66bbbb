//! Durations as Kubernetes users write them (`500ms`, `30s`, `1m30s`), in the subset of Go's
//! `time.ParseDuration` syntax that the apiserver's CEL `duration()` also accepts.

use std::{borrow::Cow, fmt, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The schema pattern; it keeps `kubectl apply` from storing a value the operator cannot read.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A duration kept as the text the user wrote, so that status and `kubectl get -o yaml`
/// echo it back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration; write it like 500ms, 30s, 5m or 1h30m")]
pub struct ParseError(String);

impl Duration {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(&self) -> Result<StdDuration, ParseError> {
        parse(&self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": 32,
        })
    }
}

/// Parses a sequence of `<number><unit>` pairs; units are `ms`, `s`, `m` and `h`.
pub fn parse(text: &str) -> Result<StdDuration, ParseError> {
    let fail = || ParseError(text.to_owned());
    if text.is_empty() {
        return Err(fail());
    }
    let mut rest = text;
    let mut total = StdDuration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(fail)?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| fail())?;
        let (unit_seconds, unit_len) = if tail.starts_with("ms") {
            (0.001, 2)
        } else if tail.starts_with('s') {
            (1.0, 1)
        } else if tail.starts_with('m') {
            (60.0, 1)
        } else if tail.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(fail());
        };
        let part = StdDuration::try_from_secs_f64(value * unit_seconds).map_err(|_| fail())?;
        total = total.checked_add(part).ok_or_else(fail)?;
        rest = &tail[unit_len..];
    }
    Ok(total)
}

/// Formats a duration the way a person reads latencies: `850µs`, `12ms`, `1.2s`.
pub fn human(duration: StdDuration) -> String {
    let micros = duration.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{}ms", micros / 1_000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("30s"), Ok(StdDuration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(StdDuration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(StdDuration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(StdDuration::from_millis(1500)));
        assert_eq!(parse("2h"), Ok(StdDuration::from_secs(7200)));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["", "30", "s", "10x", "-1s", "1.2.3s", "5 s", "1d", "1e3s"] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn formats_latencies_for_people() {
        assert_eq!(human(StdDuration::from_micros(850)), "850µs");
        assert_eq!(human(StdDuration::from_millis(12)), "12ms");
        assert_eq!(human(StdDuration::from_millis(1234)), "1.2s");
    }
}
