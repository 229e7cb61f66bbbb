//! From the members a probe found to what status shows of them and the `Degraded` condition.
//! Pure. A standby's lag moves with every write on the primary, so status takes a new figure
//! only when it moves materially or crosses `spec.healthCheck.maxReplicationLag`; otherwise a
//! healthy pair would cost a status write per probe.

use std::time::Duration;

use crate::{
    api::MemberStatus,
    conditions::{
        Change, DEGRADED, Desired,
        Status::{False, True},
    },
    engine::Member,
};

/// A lag figure is refreshed when it moves at least this far, and by half of what is shown.
const MIN_LAG_STEP: Duration = Duration::from_secs(5);

/// What a probe found, and the limit a standby's lag is judged by.
#[derive(Debug)]
pub struct MemberFacts {
    pub found: Vec<Member>,
    pub max_lag: Duration,
}

/// The members as status should show them, given what it shows now.
pub fn shown(previous: &[MemberStatus], facts: &MemberFacts) -> Vec<MemberStatus> {
    facts
        .found
        .iter()
        .map(|member| {
            let mut next = MemberStatus {
                address: member.address.clone(),
                role: member.role.map_or("unknown", |r| r.as_str()).to_owned(),
                reachable: member.role.is_some(),
                serving: member.serving,
                replication_lag: member.lag.map(whole_seconds),
                replication_lag_bytes: member.lag_bytes,
                message: member.problem.clone(),
            };
            let before = previous.iter().find(|p| p.address == next.address);
            if let Some(before) = before
                && same_but_lag(before, &next)
                && !lag_moved(before, member.lag, facts.max_lag)
            {
                next.replication_lag = before.replication_lag.clone();
                next.replication_lag_bytes = before.replication_lag_bytes;
            }
            next
        })
        .collect()
}

fn same_but_lag(a: &MemberStatus, b: &MemberStatus) -> bool {
    (&a.role, a.reachable, a.serving, &a.message) == (&b.role, b.reachable, b.serving, &b.message)
        && a.replication_lag.is_some() == b.replication_lag.is_some()
}

fn lag_moved(before: &MemberStatus, lag: Option<Duration>, max_lag: Duration) -> bool {
    let (Some(shown), Some(lag)) = (before.replication_lag.as_deref().and_then(seconds), lag)
    else {
        return false;
    };
    let (low, high) = if shown < lag {
        (shown, lag)
    } else {
        (lag, shown)
    };
    (shown > max_lag) != (lag > max_lag) || (high - low >= MIN_LAG_STEP && high >= low * 3 / 2)
}

fn whole_seconds(lag: Duration) -> String {
    format!("{}s", lag.as_secs())
}

fn seconds(text: &str) -> Option<Duration> {
    text.strip_suffix('s')?
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `Degraded` from the members status shows: removed when there are none.
pub fn degraded(members: &[MemberStatus], max_lag: Duration) -> Change {
    if members.is_empty() {
        return Change::Remove(DEGRADED);
    }
    let serving = members
        .iter()
        .find(|m| m.serving)
        .map_or("no member".to_owned(), |m| {
            format!("{} ({})", m.address, m.role)
        });
    let down: Vec<String> = members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| {
            format!(
                "{}: {}",
                m.address,
                m.message.as_deref().unwrap_or("no answer")
            )
        })
        .collect();
    if !down.is_empty() {
        return Change::Set(Desired::new(
            DEGRADED,
            True,
            "MemberUnreachable",
            format!(
                "{} of {} listed hosts did not answer ({}); sessions go to {serving}. Bring the host back or take it out of spec.uri.",
                down.len(),
                members.len(),
                down.join("; ")
            ),
        ));
    }
    let behind: Vec<String> = members
        .iter()
        .filter(|m| m.replication_lag.as_deref().and_then(seconds) > Some(max_lag))
        .map(|m| {
            let bytes = m
                .replication_lag_bytes
                .map(|b| format!(", {b} bytes"))
                .unwrap_or_default();
            format!(
                "{} is {} behind{bytes}",
                m.address,
                m.replication_lag.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !behind.is_empty() {
        return Change::Set(Desired::new(
            DEGRADED,
            True,
            "ReplicationLagging",
            format!(
                "{}, more than spec.healthCheck.maxReplicationLag ({}s); reads from it are stale. Check the standby's load and its link to the primary.",
                behind.join("; "),
                max_lag.as_secs()
            ),
        ));
    }
    Change::Set(Desired::new(
        DEGRADED,
        False,
        "AllMembersHealthy",
        format!(
            "All {} listed hosts answer, no standby is more than {}s behind; sessions go to {serving}.",
            members.len(),
            max_lag.as_secs()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Role;

    const MAX: Duration = Duration::from_secs(30);

    fn member(address: &str, role: Option<Role>, lag: Option<u64>) -> Member {
        Member {
            address: address.into(),
            role,
            problem: role.is_none().then(|| "cannot reach the server".into()),
            serving: role == Some(Role::Primary),
            lag: lag.map(Duration::from_secs),
            lag_bytes: lag.map(|s| s * 1000),
        }
    }

    fn facts(standby_lag: u64) -> MemberFacts {
        MemberFacts {
            found: vec![
                member("a:5432", Some(Role::Primary), None),
                member("b:5432", Some(Role::Standby), Some(standby_lag)),
            ],
            max_lag: MAX,
        }
    }

    fn reason(change: Change) -> (&'static str, String) {
        match change {
            Change::Set(desired) => (desired.reason, desired.message),
            Change::Remove(_) => ("removed", String::new()),
        }
    }

    #[test]
    fn small_lag_moves_keep_the_figure_status_shows() {
        let first = shown(&[], &facts(1));
        assert_eq!(first[1].replication_lag.as_deref(), Some("1s"));
        assert_eq!(shown(&first, &facts(3)), first, "2 s is not material");
        let later = shown(&first, &facts(9));
        assert_eq!(later[1].replication_lag.as_deref(), Some("9s"));
        assert_eq!(later[1].replication_lag_bytes, Some(9000));
        let near_limit = shown(&shown(&[], &facts(28)), &facts(31));
        assert_eq!(
            near_limit[1].replication_lag.as_deref(),
            Some("31s"),
            "crossed the limit"
        );
    }

    #[test]
    fn degraded_names_the_member_that_is_down_or_behind() {
        assert_eq!(
            reason(degraded(&shown(&[], &facts(0)), MAX)).0,
            "AllMembersHealthy"
        );
        let (why, message) = reason(degraded(&shown(&[], &facts(45)), MAX));
        assert_eq!(why, "ReplicationLagging");
        assert!(
            message.contains("b:5432 is 45s behind, 45000 bytes"),
            "{message}"
        );
        let down = MemberFacts {
            found: vec![
                member("a:5432", None, None),
                member("b:5432", Some(Role::Primary), None),
            ],
            max_lag: MAX,
        };
        let (why, message) = reason(degraded(&shown(&[], &down), MAX));
        assert_eq!(why, "MemberUnreachable");
        assert!(
            message.contains("a:5432: cannot reach")
                && message.contains("sessions go to b:5432 (primary)"),
            "{message}"
        );
        assert_eq!(reason(degraded(&[], MAX)).0, "removed");
    }
}
