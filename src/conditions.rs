//! Status conditions: their types, and merging a newly computed set into the previous one so
//! that `lastTransitionTime` moves only when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};

pub const READY: &str = "Ready";
pub const REACHABLE: &str = "Reachable";
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
pub const TLS_VERIFIED: &str = "TLSVerified";
pub const SCHEMA_READY: &str = "SchemaReady";
/// Some of several listed hosts are down or behind, while sessions still have a member.
pub const DEGRADED: &str = "Degraded";
/// Present while `spec.binding` is set: whether the binding Secret holds the verified login.
pub const BINDING_READY: &str = "BindingReady";
/// kstatus: present (True) only while the operator is still working toward Ready.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: present (True) only while progress needs the user to change something.
pub const STALLED: &str = "Stalled";

/// A condition as the reconciler decides it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// What to do with each condition type in one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Set(Desired),
    Remove(&'static str),
}

/// Applies `changes` to `previous`. Conditions not named in `changes` are kept as they were.
/// A condition whose status is unchanged keeps its `lastTransitionTime`; every touched
/// condition records `generation` as its `observedGeneration`.
pub fn merge(
    previous: &[Condition],
    changes: &[Change],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = previous.to_vec();
    for change in changes {
        match change {
            Change::Remove(type_) => merged.retain(|c| c.type_ != *type_),
            Change::Set(desired) => {
                let transition = merged
                    .iter()
                    .find(|c| c.type_ == desired.type_)
                    .filter(|c| c.status == desired.status.as_str())
                    .map(|c| c.last_transition_time.clone())
                    .unwrap_or(Time(now));
                let condition = Condition {
                    type_: desired.type_.to_owned(),
                    status: desired.status.as_str().to_owned(),
                    reason: desired.reason.to_owned(),
                    message: desired.message.clone(),
                    observed_generation: generation,
                    last_transition_time: transition,
                };
                match merged.iter_mut().find(|c| c.type_ == desired.type_) {
                    Some(slot) => *slot = condition,
                    None => merged.push(condition),
                }
            }
        }
    }
    merged
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn ready(status: Status, reason: &'static str) -> Change {
        Change::Set(Desired::new(READY, status, reason, "msg"))
    }

    #[test]
    fn new_condition_gets_the_current_time() {
        let merged = merge(&[], &[ready(Status::True, "Connected")], Some(1), at(0));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_transition_time, Time(at(0)));
        assert_eq!(merged[0].observed_generation, Some(1));
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time_even_when_reason_changes() {
        let first = merge(&[], &[ready(Status::False, "Unreachable")], Some(1), at(0));
        let second = merge(&first, &[ready(Status::False, "Timeout")], Some(2), at(60));
        assert_eq!(second[0].last_transition_time, Time(at(0)));
        assert_eq!(second[0].reason, "Timeout");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn flipped_status_moves_the_transition_time() {
        let first = merge(&[], &[ready(Status::False, "Unreachable")], Some(1), at(0));
        let second = merge(&first, &[ready(Status::True, "Connected")], Some(1), at(60));
        assert_eq!(second[0].last_transition_time, Time(at(60)));
    }

    #[test]
    fn remove_drops_only_the_named_type_and_others_are_kept() {
        let stalled = Change::Set(Desired::new(STALLED, Status::True, "InvalidSpec", "m"));
        let first = merge(
            &[],
            &[ready(Status::False, "InvalidSpec"), stalled],
            None,
            at(0),
        );
        let second = merge(&first, &[Change::Remove(STALLED)], None, at(1));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].type_, READY);
        assert!(!is_true(&second, READY));
    }
}
