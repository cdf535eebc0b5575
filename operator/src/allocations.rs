//! The namespace budget while promotions are judged. When the policy sets a total per namespace,
//! a promotion is judged against the budgets of the namespace's other governed agents, which the
//! agent cache shows only once the watch brings their status writes back. Promotions judged at
//! once (a GitOps sync approving several agents) would each count the others as not yet
//! governed and all be signed past the total. So the judgements that check the total take the
//! namespace's turn, one at a time, and each promotion this operator signs is counted as
//! allocated from its write until the cache shows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

/// How long a promotion is counted from its write whatever the cache shows: the watch brings a
/// write back in milliseconds; a promotion the cache still does not show after this (a watch
/// broken for long) is counted as the cache says, as before the turn existed.
const COUNTED_FOR: Duration = Duration::from_secs(60);

/// Per namespace: whose turn it is to judge against the total, and the promotions signed since
/// the cache last showed them.
#[derive(Default)]
pub struct Allocations {
    turns: Mutex<ByName<Arc<tokio::sync::Mutex<()>>>>,
    signed: Mutex<ByName<ByName<Signed>>>,
}

/// By namespace, or by agent name.
type ByName<V> = HashMap<Box<str>, V>;

/// A promotion signed with this budget at this instant.
#[derive(Clone, Copy)]
struct Signed {
    monthly_budget_usd: f64,
    at: Instant,
}

/// The namespace's turn, held while one promotion is judged against its total and written.
pub struct Turn {
    _held: OwnedMutexGuard<()>,
}

impl Allocations {
    /// Wait for the namespace's turn.
    pub async fn turn(&self, namespace: &str) -> Turn {
        let turn = {
            let mut turns = lock(&self.turns);
            // A namespace nobody waits for is forgotten (only the map still holds its turn).
            turns.retain(|ns, turn| &**ns == namespace || Arc::strong_count(turn) > 1);
            turns.entry(namespace.into()).or_default().clone()
        };
        Turn {
            _held: turn.lock_owned().await,
        }
    }

    /// Record the judgement written for the agent `name` during the namespace's turn: signed
    /// with this budget, or not governed (`None`).
    pub fn judged(&self, _turn: &Turn, namespace: &str, name: &str, budget: Option<f64>) {
        let mut signed = lock(&self.signed);
        let now = Instant::now();
        signed.retain(|_, agents| {
            agents.retain(|_, s| now.duration_since(s.at) < COUNTED_FOR);
            !agents.is_empty()
        });
        match budget {
            Some(monthly_budget_usd) => {
                signed.entry(namespace.into()).or_default().insert(
                    name.into(),
                    Signed {
                        monthly_budget_usd,
                        at: now,
                    },
                );
            }
            None => {
                if let Some(agents) = signed.get_mut(namespace) {
                    agents.remove(name);
                }
            }
        }
    }

    /// The budgets the operator signed in `namespace` within the last minute, by agent name.
    pub fn signed(&self, namespace: &str) -> HashMap<Box<str>, f64> {
        lock(&self.signed)
            .get(namespace)
            .map(|agents| {
                agents
                    .iter()
                    .filter(|(_, s)| s.at.elapsed() < COUNTED_FOR)
                    .map(|(name, s)| (name.clone(), s.monthly_budget_usd))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forget the agent (deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Some(agents) = lock(&self.signed).get_mut(namespace) {
            agents.remove(name);
        }
    }
}

/// A poisoned lock still holds a consistent map (every update is one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signed_budget_counts_until_judged_otherwise() {
        let allocations = Allocations::default();
        let turn = allocations.turn("a").await;
        allocations.judged(&turn, "a", "one", Some(60.0));
        assert_eq!(
            allocations.signed("a"),
            HashMap::from([("one".into(), 60.0)])
        );
        assert!(allocations.signed("b").is_empty());
        allocations.judged(&turn, "a", "one", None);
        assert!(allocations.signed("a").is_empty());
        allocations.judged(&turn, "a", "two", Some(10.0));
        allocations.forget("a", "two");
        assert!(allocations.signed("a").is_empty());
    }

    #[tokio::test]
    async fn one_judgement_at_a_time_per_namespace() {
        let allocations = Arc::new(Allocations::default());
        let first = allocations.turn("a").await;
        // Another namespace does not wait.
        let other = tokio::time::timeout(Duration::from_secs(5), allocations.turn("b")).await;
        assert!(other.is_ok());
        let waiting = tokio::spawn({
            let allocations = allocations.clone();
            async move { allocations.turn("a").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a second turn while the first is held"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(second.is_ok(), "the turn passes on when released");
    }
}
