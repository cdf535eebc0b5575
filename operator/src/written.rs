//! What the Agent controller last judged and wrote, so that it does not do the same work twice:
//!
//! - the watch events its own status writes cause (the agent's, and its approvals') are not
//!   judged again: nothing the judgement depends on changed;
//! - a status it has just written is not written again while the cache still shows the object
//!   from before the write.
//!
//! Only fingerprints are kept (a few dozen bytes an object): the cache holds the objects. An
//! object without a resourceVersion (never, from the API server) is never taken as unchanged.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A 64-bit fingerprint (SipHash with fixed keys: stable within the process).
pub type Fingerprint = u64;

pub fn fingerprint(value: &(impl Hash + ?Sized)) -> Fingerprint {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The fingerprint of a status as the API server stores it (its JSON).
pub fn status_fingerprint(status: &impl Serialize) -> Fingerprint {
    serde_json::to_vec(status).map_or(0, |json| fingerprint(&json[..]))
}

/// One status write: the object's resourceVersion before and after it, and what was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub before: Fingerprint,
    pub after: Fingerprint,
    pub status: Fingerprint,
}

impl Write {
    /// The version an object the cache shows at `cached` really has: a cache that has not seen
    /// this write yet shows the version from before it.
    pub fn version(this: Option<&Write>, cached: Fingerprint) -> Fingerprint {
        match this {
            Some(w) if w.before == cached => w.after,
            _ => cached,
        }
    }
}

/// Whether the judged status must be written over what the cache shows (at `version`), given
/// the last write to the object. A cache that has not caught up with that write is compared with
/// what was written, not with what it shows.
pub fn must_write<S: PartialEq + Serialize>(
    cached: Option<&S>,
    version: Option<Fingerprint>,
    last: Option<&Write>,
    judged: &S,
) -> bool {
    if let (Some(version), Some(last)) = (version, last)
        && version == last.before
        && last.before != last.after
    {
        return status_fingerprint(judged) != last.status;
    }
    cached != Some(judged)
}

/// An agent's last judgement: the version of the agent it stands for (after its own write), a
/// fingerprint of everything else it depended on (the resync round among it), and until when
/// it holds (a sandbox's expiry, an approval's; None: until something changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    pub version: Fingerprint,
    pub inputs: Fingerprint,
    pub until: Option<Instant>,
    /// The agent's last status write, if this judgement made one.
    pub write: Option<Write>,
}

impl Judged {
    /// Whether the judgement still holds for an agent at `version` (the cache's) judged on
    /// `inputs` at `now`, and if so for how long (None: until something changes); None: judge
    /// again.
    pub fn holds(
        this: Option<&Judged>,
        version: Option<Fingerprint>,
        inputs: Fingerprint,
        now: Instant,
    ) -> Option<Option<Duration>> {
        let (this, version) = (this?, version?);
        let version = Write::version(this.write.as_ref(), version);
        let unchanged = version == this.version && inputs == this.inputs;
        match this.until {
            _ if !unchanged => None,
            None => Some(None),
            Some(until) => (now < until).then(|| Some(until - now)),
        }
    }
}

/// Beyond this many objects the memory is cleared (it only saves work; deletions forget their
/// entries, this bounds what a missed deletion leaves behind).
const BOUND: usize = 500_000;

/// The records of agents and approvals, by uid.
#[derive(Default)]
pub struct Written {
    agents: Mutex<HashMap<Fingerprint, Judged>>,
    promotions: Mutex<HashMap<Fingerprint, Write>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bounded<V>(map: &mut HashMap<Fingerprint, V>) {
    if map.len() >= BOUND {
        map.clear();
    }
}

impl Written {
    pub fn agent(&self, uid: &str) -> Option<Judged> {
        lock(&self.agents).get(&fingerprint(uid)).copied()
    }

    pub fn judged(&self, uid: &str, judged: Judged) {
        let mut agents = lock(&self.agents);
        bounded(&mut agents);
        agents.insert(fingerprint(uid), judged);
    }

    pub fn promotion(&self, uid: &str) -> Option<Write> {
        lock(&self.promotions).get(&fingerprint(uid)).copied()
    }

    pub fn promotion_written(&self, uid: &str, write: Write) {
        let mut promotions = lock(&self.promotions);
        bounded(&mut promotions);
        promotions.insert(fingerprint(uid), write);
    }

    /// The object (agent or approval) `uid` is gone.
    pub fn forget(&self, uid: &str) {
        let key = fingerprint(uid);
        lock(&self.agents).remove(&key);
        lock(&self.promotions).remove(&key);
    }

    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (lock(&self.agents).len(), lock(&self.promotions).len())
    }
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::{AgentStatus, GovernanceStatus};

    use super::*;

    fn status(governance: GovernanceStatus) -> AgentStatus {
        AgentStatus {
            governance_status: Some(governance),
            ..AgentStatus::default()
        }
    }

    #[test]
    fn an_unchanged_result_is_not_written() {
        let valid = status(GovernanceStatus::GovernedValid);
        assert!(!must_write(Some(&valid), Some(1), None, &valid));
        assert!(must_write(
            Some(&valid),
            Some(1),
            None,
            &status(GovernanceStatus::GovernedInvalidated)
        ));
        assert!(must_write(None, Some(1), None, &valid), "no status yet");
    }

    #[test]
    fn a_write_the_cache_has_not_seen_yet_is_not_made_again() {
        let old = status(GovernanceStatus::Sandbox);
        let new = status(GovernanceStatus::GovernedValid);
        let write = Write {
            before: 1,
            after: 2,
            status: status_fingerprint(&new),
        };
        // The cache still shows version 1 (and the old status): what was written counts.
        assert!(!must_write(Some(&old), Some(1), Some(&write), &new));
        assert!(must_write(
            Some(&old),
            Some(1),
            Some(&write),
            &status(GovernanceStatus::GovernedInvalidated)
        ));
        // Once the cache shows the write (or anyone's later one), the cache counts.
        assert!(!must_write(Some(&new), Some(2), Some(&write), &new));
        assert!(
            must_write(Some(&old), Some(3), Some(&write), &new),
            "someone else wrote"
        );
        // Without a version nothing is assumed.
        assert!(must_write(Some(&old), None, Some(&write), &new));
    }

    #[test]
    fn the_echo_of_its_own_write_is_not_judged_again() {
        let now = Instant::now();
        let judged = Judged {
            version: 2,
            inputs: 7,
            until: Some(now + Duration::from_secs(60)),
            write: Some(Write {
                before: 1,
                after: 2,
                status: 9,
            }),
        };
        // The echo (version 2), or the cache before it arrives (version 1): unchanged.
        assert_eq!(
            Judged::holds(Some(&judged), Some(2), 7, now),
            Some(Some(Duration::from_secs(60)))
        );
        assert!(Judged::holds(Some(&judged), Some(1), 7, now).is_some());
        // Anything else is judged again: another version (a spec change, a status someone else
        // wrote), other inputs (policy, keys, guards, approvals), the time it held for run out,
        // no version, nothing judged yet.
        assert_eq!(Judged::holds(Some(&judged), Some(3), 7, now), None);
        assert_eq!(Judged::holds(Some(&judged), Some(2), 8, now), None);
        assert_eq!(
            Judged::holds(Some(&judged), Some(2), 7, now + Duration::from_secs(60)),
            None
        );
        assert_eq!(Judged::holds(Some(&judged), None, 7, now), None);
        assert_eq!(Judged::holds(None, Some(2), 7, now), None);
        // Without a time bound it holds until something changes.
        let unbounded = Judged {
            until: None,
            ..judged
        };
        let later = now + Duration::from_secs(86_400);
        assert_eq!(
            Judged::holds(Some(&unbounded), Some(2), 7, later),
            Some(None)
        );
        assert_eq!(Judged::holds(Some(&unbounded), Some(2), 8, later), None);
    }

    #[test]
    fn versions_map_through_the_last_write() {
        let write = Write {
            before: 1,
            after: 2,
            status: 0,
        };
        assert_eq!(Write::version(Some(&write), 1), 2);
        assert_eq!(Write::version(Some(&write), 2), 2);
        assert_eq!(Write::version(Some(&write), 5), 5);
        assert_eq!(Write::version(None, 1), 1);
    }

    #[test]
    fn records_are_kept_by_uid_and_forgotten() {
        let written = Written::default();
        let judged = Judged {
            version: 1,
            inputs: 1,
            until: Some(Instant::now()),
            write: None,
        };
        written.judged("a", judged);
        written.promotion_written(
            "p",
            Write {
                before: 1,
                after: 2,
                status: 3,
            },
        );
        assert_eq!(written.agent("a"), Some(judged));
        assert_eq!(written.agent("b"), None);
        assert_eq!(written.promotion("p").map(|w| w.after), Some(2));
        written.forget("a");
        written.forget("p");
        assert_eq!(written.len(), (0, 0));
    }
}
