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
///
/// Exact decimal arithmetic in nanoseconds, as Go's `time.ParseDuration` does: through `f64`,
/// `131072.48m` came out a nanosecond long. Decimals finer than what [`FRACTION_DIGITS`] keeps
/// are dropped (they are far below a nanosecond).
pub fn parse(text: &str) -> Result<StdDuration, ParseError> {
    let fail = || ParseError(text.to_owned());
    if text.is_empty() {
        return Err(fail());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(fail)?;
        let (number, tail) = rest.split_at(number_len);
        let (unit_nanos, unit_len) = if tail.starts_with("ms") {
            (1_000_000, 2)
        } else if tail.starts_with('s') {
            (1_000_000_000, 1)
        } else if tail.starts_with('m') {
            (60_000_000_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000_000_000, 1)
        } else {
            return Err(fail());
        };
        let part = nanos(number, unit_nanos).ok_or_else(fail)?;
        total = total.checked_add(part).ok_or_else(fail)?;
        rest = &tail[unit_len..];
    }
    let seconds = u64::try_from(total / 1_000_000_000).map_err(|_| fail())?;
    Ok(StdDuration::new(seconds, (total % 1_000_000_000) as u32))
}

/// Decimal places of a number that count: with the largest unit (an hour, 3.6e12 ns), the
/// 24th is below 1e-11 ns, and 24 digits times an hour still fit in a `u128`.
const FRACTION_DIGITS: usize = 24;

/// `number` (digits with at most one `.`, at least one digit) times `unit_nanos`, truncated to
/// whole nanoseconds; `None` when it is malformed or too large.
fn nanos(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction = &fraction[..fraction.len().min(FRACTION_DIGITS)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().ok()? * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    whole.checked_mul(unit_nanos)?.checked_add(fraction_nanos)
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
    fn decimals_are_exact_to_the_nanosecond() {
        // Found by tests/fuzz_parsing.rs: through f64 this was 7864348.800000001s.
        assert_eq!(
            parse("131072.48m"),
            Ok(StdDuration::from_millis(7_864_348_800))
        );
        assert_eq!(parse("0.1s"), Ok(StdDuration::from_millis(100)));
        assert_eq!(parse("1.000000001s"), Ok(StdDuration::new(1, 1)));
        assert_eq!(parse("1.0000000019s"), Ok(StdDuration::new(1, 1)));
        assert_eq!(parse(".5s"), Ok(StdDuration::from_millis(500)));
        assert_eq!(
            parse(&format!("1.{}h", "9".repeat(60))).unwrap().as_secs(),
            7199
        );
    }

    #[test]
    fn rejects_durations_too_long_to_represent() {
        assert!(parse("5124095576030431h").is_ok());
        assert!(parse("5124095576030432h").is_err());
        assert!(parse(&format!("{}s", "9".repeat(40))).is_err());
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "", "30", "s", "10x", "-1s", "1.2.3s", "5 s", "1d", "1e3s", ".s", "1m.",
        ] {
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
