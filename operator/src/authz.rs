//! Whether an approver still holds the verb `promote` on an agent: a SubjectAccessReview the
//! operator asks itself (the API server checked it when the approval was created; a role revoked
//! since is honoured from the next judgement of the agent). Answers are cached briefly.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use agentgov_api::promotion::Requester;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::error::{Error, Result};

/// The custom verb an approver must hold.
pub const PROMOTE_VERB: &str = "promote";

/// A cached answer's key: the SHA-256 of who asks (groups sorted), the namespace and the agent.
/// 32 bytes, where the five strings and the list were about 450 (1.8 MB in a full cache); a
/// digest no one can collide, since tenants name agents and a collision would answer for
/// another approver or agent.
type Key = [u8; 32];

fn key(who: &Requester, namespace: &str, agent: &str) -> Key {
    let mut groups: Vec<&str> = who.groups.iter().map(String::as_str).collect();
    groups.sort_unstable();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let fields = [&who.username[..], &who.uid, namespace, agent]
        .into_iter()
        .chain(groups);
    for field in fields {
        // Each field length-prefixed: no two keys differ only in where one field ends.
        context.update(&(field.len() as u64).to_le_bytes());
        context.update(field.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// SubjectAccessReviews for approvers, cached for `ttl`.
pub struct Approvers {
    api: Option<Api<SubjectAccessReview>>,
    ttl: Duration,
    cache: Mutex<HashMap<Key, (Instant, bool)>>,
    /// Tests: a fixed answer instead of the API.
    fixed: Option<bool>,
}

impl Approvers {
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        Approvers {
            api: Some(Api::all(client)),
            ttl,
            cache: Mutex::default(),
            fixed: None,
        }
    }

    /// Every approver authorized (or none), without an API (tests).
    #[cfg(test)]
    pub fn fixed(allowed: bool) -> Self {
        Approvers {
            api: None,
            ttl: Duration::ZERO,
            cache: Mutex::default(),
            fixed: Some(allowed),
        }
    }

    /// Whether `who` may `promote` the agent `namespace/agent`.
    pub async fn may_promote(&self, who: &Requester, namespace: &str, agent: &str) -> Result<bool> {
        if let Some(answer) = self.fixed {
            return Ok(answer);
        }
        let key = key(who, namespace, agent);
        if let Some((at, allowed)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(*allowed);
        }
        let Some(api) = self.api.as_ref() else {
            return Ok(false);
        };
        let review = SubjectAccessReview {
            metadata: Default::default(),
            spec: SubjectAccessReviewSpec {
                user: Some(who.username.clone()),
                uid: (!who.uid.is_empty()).then(|| who.uid.clone()),
                groups: Some(who.groups.clone()),
                extra: None::<BTreeMap<String, Vec<String>>>,
                resource_attributes: Some(ResourceAttributes {
                    group: Some(agentgov_api::GROUP.to_string()),
                    resource: Some("agents".to_string()),
                    verb: Some(PROMOTE_VERB.to_string()),
                    namespace: Some(namespace.to_string()),
                    name: Some(agent.to_string()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            },
            status: None,
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        let status = answer.status.ok_or_else(|| {
            Error::Config("a SubjectAccessReview came back without a status".into())
        })?;
        let clean = status.evaluation_error.as_deref().is_none_or(str::is_empty);
        if clean {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= 4096 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), status.allowed));
        }
        Ok(status.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(username: &str, groups: &[&str]) -> Requester {
        Requester {
            username: username.into(),
            uid: "uid-1".into(),
            groups: groups.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn one_key_per_approver_and_agent_whatever_the_order_of_groups() {
        let alice = requester("alice", &["team-a", "system:authenticated"]);
        assert_eq!(
            key(&alice, "team-a", "filings"),
            key(
                &requester("alice", &["system:authenticated", "team-a"]),
                "team-a",
                "filings"
            )
        );
        let others = [
            key(
                &requester("bob", &["team-a", "system:authenticated"]),
                "team-a",
                "filings",
            ),
            key(&requester("alice", &["team-a"]), "team-a", "filings"),
            key(&alice, "team-b", "filings"),
            key(&alice, "team-a", "filings-2"),
            // Where one field ends and the next begins counts.
            key(&alice, "team-af", "ilings"),
        ];
        for other in others {
            assert_ne!(other, key(&alice, "team-a", "filings"));
        }
    }
}
