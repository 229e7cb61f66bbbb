//! Several hosts in one URI (`postgres://h1:5432,h2:5433/db`): what each one is, and which one
//! sessions go to. Every probe asks each listed host for its role and replication position in
//! one statement, so status can show every member, not only the one in use.
//!
//! `target_session_attrs` is libpq's: `any` (the default), `read-write`, `read-only`, `primary`,
//! `standby` and `prefer-standby`, each meaning what it means to libpq; hosts are tried in the
//! order listed. tokio-postgres knows only some of them, and would report none of the others'
//! members, so the choice is made here.

use std::time::Duration;

use url::Url;

use crate::{
    engine::{EngineError, Member, Role},
    settings::SpecError,
};

/// What sessions must be able to do, as libpq's `target_session_attrs` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionAttrs {
    #[default]
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

impl SessionAttrs {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Reads `target_session_attrs` from the URI (validated by `check` before a pool opens).
    pub fn from_uri(url: &Url) -> Result<Self, SpecError> {
        Self::from_query(url.query().unwrap_or_default())
    }

    /// Reads `target_session_attrs` from a URI's query, which a URI listing several hosts
    /// needs: the URL parser reads one host only.
    pub fn from_query(query: &str) -> Result<Self, SpecError> {
        match url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "target_session_attrs")
        {
            None => Ok(Self::Any),
            Some((_, value)) => Self::parse(&value).ok_or(SpecError::UnexpectedUriParts(
                "spec.uri target_session_attrs must be one of any, read-write, read-only, primary, standby or prefer-standby",
            )),
        }
    }

    fn accepts(self, seen: &Seen) -> bool {
        match self {
            Self::Any | Self::PreferStandby => true,
            Self::ReadWrite => !seen.read_only,
            Self::ReadOnly => seen.read_only,
            Self::Primary => !seen.in_recovery,
            Self::Standby => seen.in_recovery,
        }
    }
}

/// The one statement each member answers: its role, whether it takes writes, how far its
/// replay is behind (zero once it has replayed all it received, which an idle primary's
/// standby has; unknown while it has replayed no transaction yet), and its WAL position
/// (written on a primary, replayed on a standby).
pub const INSPECT: &str = "SELECT pg_is_in_recovery(), \
     current_setting('transaction_read_only'), \
     CASE WHEN NOT pg_is_in_recovery() THEN NULL \
          WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END, \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";

/// One member's answer to `INSPECT`.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub in_recovery: bool,
    pub read_only: bool,
    pub lag: Option<Duration>,
    /// The WAL position, in bytes.
    pub lsn: Option<u64>,
}

impl Seen {
    /// Reads the four text columns of `INSPECT`'s row.
    pub fn from_row(columns: [Option<&str>; 4]) -> Option<Self> {
        let [recovery, read_only, lag, lsn] = columns;
        Some(Self {
            in_recovery: recovery? == "t",
            read_only: read_only? == "on",
            lag: lag
                .and_then(|s| s.parse::<f64>().ok())
                .map(|seconds| Duration::from_secs_f64(seconds.max(0.0))),
            lsn: lsn.and_then(parse_lsn),
        })
    }
}

/// `16/B374D848` → the byte position it names.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

/// Which member sessions go to (its index), or why none can take them. `answers` are in the
/// order the URI lists the hosts.
pub fn choose(
    attrs: SessionAttrs,
    answers: &[(String, Result<Seen, EngineError>)],
) -> Result<usize, EngineError> {
    let seen = |i: usize| answers[i].1.as_ref().ok();
    let preferred = (attrs == SessionAttrs::PreferStandby)
        .then(|| (0..answers.len()).find(|&i| seen(i).is_some_and(|s| s.in_recovery)))
        .flatten();
    if let Some(chosen) =
        preferred.or_else(|| (0..answers.len()).find(|&i| seen(i).is_some_and(|s| attrs.accepts(s))))
    {
        return Ok(chosen);
    }
    // No member will do. A refused login or a missing database says more than any network
    // trouble: the first such answer is the failure.
    let errors: Vec<&EngineError> = answers.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    if let Some(answered) = errors.iter().find(|e| e.server_answered()) {
        return Err((*answered).clone());
    }
    if errors.len() == answers.len() && errors.len() == 1 {
        return Err(errors[0].clone());
    }
    let each = answers
        .iter()
        .map(|(address, result)| match result {
            Ok(seen) => format!("{address} is {}", role_of(seen).as_str()),
            Err(error) => format!("{address}: {error}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() == answers.len() {
        return Err(EngineError::Unreachable {
            endpoint: answers
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            detail: each,
        });
    }
    Err(EngineError::Engine {
        reason: &super::NO_SUITABLE_MEMBER,
        detail: format!(
            "no listed host takes {} sessions: {each}",
            attrs.as_str()
        ),
    })
}

fn role_of(seen: &Seen) -> Role {
    if seen.in_recovery {
        Role::Standby
    } else {
        Role::Primary
    }
}

/// Every member as status shows it: role, whether it answered, and for a standby how far it is
/// behind (bytes from the primary's position in the same probe, where one answered).
pub fn report(answers: &[(String, Result<Seen, EngineError>)], serving: Option<usize>) -> Vec<Member> {
    let primary_lsn = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| !s.in_recovery)
        .and_then(|s| s.lsn);
    answers
        .iter()
        .enumerate()
        .map(|(i, (address, result))| match result {
            Ok(seen) => Member {
                address: address.clone(),
                role: Some(role_of(seen)),
                problem: None,
                serving: serving == Some(i),
                lag: seen.lag,
                lag_bytes: match (seen.in_recovery, primary_lsn, seen.lsn) {
                    (true, Some(primary), Some(replayed)) => Some(primary.saturating_sub(replayed)),
                    _ => None,
                },
            },
            Err(error) => Member {
                address: address.clone(),
                role: None,
                problem: Some(error.to_string()),
                serving: false,
                lag: None,
                lag_bytes: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> Seen {
        Seen {
            in_recovery: false,
            read_only: false,
            lag: None,
            lsn: Some(0x1_0000_0100),
        }
    }

    fn standby() -> Seen {
        Seen {
            in_recovery: true,
            read_only: true,
            lag: Some(Duration::from_secs(2)),
            lsn: Some(0x1_0000_0000),
        }
    }

    fn down(address: &str) -> EngineError {
        EngineError::Unreachable {
            endpoint: address.into(),
            detail: "Connection refused".into(),
        }
    }

    fn answers(members: Vec<Result<Seen, EngineError>>) -> Vec<(String, Result<Seen, EngineError>)> {
        members
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("h{i}:5432"), r))
            .collect()
    }

    #[test]
    fn lsns_read_as_byte_positions() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn each_attribute_picks_the_first_member_that_has_it() {
        let pair = answers(vec![Ok(standby()), Ok(primary())]);
        assert_eq!(choose(SessionAttrs::Any, &pair), Ok(0));
        assert_eq!(choose(SessionAttrs::ReadWrite, &pair), Ok(1));
        assert_eq!(choose(SessionAttrs::Primary, &pair), Ok(1));
        assert_eq!(choose(SessionAttrs::ReadOnly, &pair), Ok(0));
        assert_eq!(choose(SessionAttrs::Standby, &pair), Ok(0));
        let reversed = answers(vec![Ok(primary()), Ok(standby())]);
        assert_eq!(choose(SessionAttrs::PreferStandby, &reversed), Ok(1));
        let alone = answers(vec![Ok(primary()), Err(down("h1:5432"))]);
        assert_eq!(choose(SessionAttrs::PreferStandby, &alone), Ok(0));
    }

    #[test]
    fn a_standby_left_alone_is_no_read_write_member() {
        let failed_over = answers(vec![Err(down("h0:5432")), Ok(standby())]);
        let error = choose(SessionAttrs::ReadWrite, &failed_over).unwrap_err();
        assert_eq!(error.reason(), "NoSuitableMember");
        let text = error.to_string();
        assert!(text.contains("read-write") && text.contains("h1:5432 is standby"), "{text}");
        assert!(text.contains("h0:5432: cannot reach"), "{text}");
    }

    #[test]
    fn a_refused_login_outranks_network_trouble_and_all_down_is_unreachable() {
        let refused = EngineError::AuthenticationFailed {
            user: "app".into(),
            detail: "28P01".into(),
        };
        let mixed = answers(vec![Err(down("h0:5432")), Err(refused.clone())]);
        assert_eq!(choose(SessionAttrs::Any, &mixed), Err(refused));
        let all_down = answers(vec![Err(down("h0:5432")), Err(down("h1:5432"))]);
        let error = choose(SessionAttrs::Any, &all_down).unwrap_err();
        assert_eq!(error.reason(), "Unreachable");
        assert!(error.to_string().contains("h0:5432,h1:5432"), "{error}");
    }

    #[test]
    fn a_standby_is_reported_with_its_distance_from_the_primary() {
        let members = report(&answers(vec![Ok(primary()), Ok(standby())]), Some(0));
        assert_eq!(members[0].role, Some(Role::Primary));
        assert!(members[0].serving && !members[1].serving);
        assert_eq!(members[1].lag_bytes, Some(0x100));
        assert_eq!(members[1].lag, Some(Duration::from_secs(2)));
        let orphan = report(&answers(vec![Err(down("h0:5432")), Ok(standby())]), None);
        assert_eq!(orphan[1].lag_bytes, None, "no primary answered");
        assert!(orphan[0].problem.as_deref().unwrap().contains("refused"));
    }

    #[test]
    fn target_session_attrs_is_read_from_the_uri() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            SessionAttrs::from_uri(&url("postgres://h/db?target_session_attrs=read-write")),
            Ok(SessionAttrs::ReadWrite)
        );
        assert_eq!(SessionAttrs::from_uri(&url("postgres://h/db")), Ok(SessionAttrs::Any));
        assert!(SessionAttrs::from_uri(&url("postgres://h/db?target_session_attrs=master")).is_err());
        assert_eq!(
            SessionAttrs::from_query("sslmode=require&target_session_attrs=primary"),
            Ok(SessionAttrs::Primary)
        );
    }
}
