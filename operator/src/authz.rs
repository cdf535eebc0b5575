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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    username: String,
    uid: String,
    groups: Vec<String>,
    namespace: String,
    agent: String,
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
        let mut groups = who.groups.clone();
        groups.sort();
        let key = Key {
            username: who.username.clone(),
            uid: who.uid.clone(),
            groups,
            namespace: namespace.to_string(),
            agent: agent.to_string(),
        };
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
