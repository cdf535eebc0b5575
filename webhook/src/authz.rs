//! Who may promote (and extend a sandbox): a SubjectAccessReview for the custom verb `promote`
//! (or `extend`) on `agents.agentgov.dev`, asked for the AdmissionReview's `userInfo` (never a
//! field of the object). Answers are cached briefly per (user, uid, groups, extra, verb,
//! namespace, name).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// The custom verb that gates promotion.
pub const PROMOTE_VERB: &str = "promote";
/// The custom verb that lets a sandbox's expiry move later (an audited exception).
pub const EXTEND_VERB: &str = "extend";

#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("SubjectAccessReview failed: {0}")]
    Api(#[from] kube::Error),
    #[error("SubjectAccessReview timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// Decides whether a user holds a custom verb (`promote`, `extend`) on an agent.
pub trait Authorizer: Send + Sync {
    fn allowed<'a>(
        &'a self,
        user: &'a UserInfo,
        verb: &'static str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, AuthzError>>;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    user: Option<String>,
    uid: Option<String>,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
    verb: &'static str,
    namespace: String,
    name: String,
}

/// At most this many cached answers; past it expired entries go, then everything.
const CACHE_CAPACITY: usize = 4096;

/// The real authorizer: one SubjectAccessReview per (cache miss).
pub struct SarAuthorizer {
    api: Api<SubjectAccessReview>,
    timeout: Duration,
    ttl: Duration,
    cache: Mutex<HashMap<CacheKey, (Instant, bool)>>,
}

impl std::fmt::Debug for SarAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SarAuthorizer")
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SarAuthorizer {
    pub fn new(client: kube::Client, timeout: Duration, ttl: Duration) -> Self {
        SarAuthorizer {
            api: Api::all(client),
            timeout,
            ttl,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<bool> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, allowed)| *allowed)
    }

    fn remember(&self, key: CacheKey, allowed: bool) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), allowed));
    }

    async fn review(&self, review: SubjectAccessReview) -> Result<(bool, bool), AuthzError> {
        let created = tokio::time::timeout(
            self.timeout,
            self.api.create(&PostParams::default(), &review),
        )
        .await
        .map_err(|_| AuthzError::Timeout(self.timeout))??;
        let status = created
            .status
            .ok_or_else(|| AuthzError::Other("SubjectAccessReview has no status".into()))?;
        if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
            tracing::warn!(
                error,
                allowed = status.allowed,
                "SubjectAccessReview evaluation error"
            );
        }
        // Only a clean answer is cached.
        let cacheable = status.evaluation_error.as_deref().is_none_or(str::is_empty);
        Ok((status.allowed, cacheable))
    }
}

/// The SubjectAccessReview asked for `user` using `verb` on the agent `namespace/name`.
pub fn access_review(
    user: &UserInfo,
    verb: &str,
    namespace: &str,
    name: &str,
) -> SubjectAccessReview {
    SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(agentgov_api::GROUP.to_string()),
                resource: Some("agents".to_string()),
                verb: Some(verb.to_string()),
                namespace: Some(namespace.to_string()),
                name: (!name.is_empty()).then(|| name.to_string()),
                ..Default::default()
            }),
            non_resource_attributes: None,
        },
        status: None,
    }
}

impl Authorizer for SarAuthorizer {
    fn allowed<'a>(
        &'a self,
        user: &'a UserInfo,
        verb: &'static str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, AuthzError>> {
        Box::pin(async move {
            let mut groups = user.groups.clone().unwrap_or_default();
            groups.sort();
            let key = CacheKey {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups,
                extra: user.extra.clone().unwrap_or_default(),
                verb,
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            if let Some(allowed) = self.cached(&key) {
                return Ok(allowed);
            }
            let (allowed, cacheable) = self
                .review(access_review(user, verb, namespace, name))
                .await?;
            if cacheable {
                self.remember(key, allowed);
            }
            Ok(allowed)
        })
    }
}

/// A fixed answer per verb, counting calls: for tests and benchmarks without an API server.
#[derive(Debug)]
pub struct FixedAuthorizer {
    answer: Result<bool, String>,
    by_verb: HashMap<&'static str, Result<bool, String>>,
    calls: AtomicUsize,
}

impl FixedAuthorizer {
    /// The same answer for every verb.
    pub fn new(answer: Result<bool, String>) -> Self {
        FixedAuthorizer {
            answer,
            by_verb: HashMap::new(),
            calls: AtomicUsize::new(0),
        }
    }

    /// Another answer for `verb`.
    pub fn with_verb(mut self, verb: &'static str, answer: Result<bool, String>) -> Self {
        self.by_verb.insert(verb, answer);
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Authorizer for FixedAuthorizer {
    fn allowed<'a>(
        &'a self,
        _user: &'a UserInfo,
        verb: &'static str,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<bool, AuthzError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .by_verb
            .get(verb)
            .unwrap_or(&self.answer)
            .clone()
            .map_err(AuthzError::Other);
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_carries_user_info_not_object_fields() {
        let user = UserInfo {
            username: Some("alice".into()),
            uid: Some("u-1".into()),
            groups: Some(vec!["dev".into()]),
            extra: Some(BTreeMap::from([("scopes".into(), vec!["x".into()])])),
        };
        let sar = access_review(&user, PROMOTE_VERB, "team-a", "bot");
        let attrs = sar.spec.resource_attributes.unwrap();
        assert_eq!(sar.spec.user.as_deref(), Some("alice"));
        assert_eq!(sar.spec.uid.as_deref(), Some("u-1"));
        assert_eq!(sar.spec.groups, Some(vec!["dev".to_string()]));
        assert!(sar.spec.extra.is_some());
        assert_eq!(attrs.group.as_deref(), Some("agentgov.dev"));
        assert_eq!(attrs.resource.as_deref(), Some("agents"));
        assert_eq!(attrs.verb.as_deref(), Some("promote"));
        assert_eq!(attrs.namespace.as_deref(), Some("team-a"));
        assert_eq!(attrs.name.as_deref(), Some("bot"));
        assert_eq!(
            access_review(&user, EXTEND_VERB, "team-a", "")
                .spec
                .resource_attributes
                .unwrap()
                .name,
            None
        );
    }
}
