//! The sandbox checks (6 and 7 of the seven): expiry judged by the webhook's clock against the
//! API server's creationTimestamp, capped by the maximum TTL, and containment.

mod common;

use agentgov_api::AgentStatus;
use agentgov_api::admission::AdmissionCheck;
use agentgov_api::agent::SandboxSpec;
use agentgov_api::expiry::ExpiryPolicy;
use common::*;
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[test]
fn sandbox_expiry_is_judged_by_the_supplied_clock() {
    let mut s = sandbox();
    assert_eq!(
        s.spec.sandbox.as_ref().and_then(|b| b.ttl_seconds),
        Some(86_400)
    );
    s.now = after(&s, SignedDuration::from_secs(86_399));
    assert_admitted(s.check(ed25519_ring()), "a second before the TTL");
    // The object cannot keep itself alive, or kill itself, through status.
    s.status = Some(AgentStatus {
        expires_at: Some(Time(at(T0 - 1))),
        ..AgentStatus::default()
    });
    assert_admitted(s.check(ed25519_ring()), "status.expiresAt in the past");
    s.status = Some(AgentStatus {
        expires_at: Some(Time(at(T0 + 86_400 * 365))),
        ..AgentStatus::default()
    });
    s.now = after(&s, SignedDuration::from_secs(86_400));
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "at the TTL",
    );
    assert!(d.reason.contains("research-scratchpad"), "{}", d.reason);
    // No sandbox block: the default TTL (72 hours).
    s.spec.sandbox = None;
    s.now = after(
        &s,
        SignedDuration::from_hours(72) - SignedDuration::from_secs(1),
    );
    assert_admitted(s.check(ed25519_ring()), "before the default TTL");
    s.now = after(&s, SignedDuration::from_hours(72));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "default TTL",
    );
}

#[test]
fn sandbox_expires_at_in_the_far_future_is_capped_by_max_ttl() {
    let mut s = sandbox();
    let far = Time(at(T0 + 100 * 365 * 86_400));
    s.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: None,
        expires_at: Some(far.clone()),
    });
    let max = ExpiryPolicy::default().max_ttl;
    s.now = after(&s, max - SignedDuration::from_secs(1));
    assert_admitted(s.check(ed25519_ring()), "before max TTL");
    s.now = after(&s, max);
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "at max TTL",
    );
    s.expiry = ExpiryPolicy {
        max_ttl: SignedDuration::from_hours(1),
        ..ExpiryPolicy::default()
    };
    s.now = after(&s, SignedDuration::from_hours(1));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "custom max TTL",
    );
    s.spec.sandbox = Some(SandboxSpec {
        ttl_seconds: Some(i64::MAX),
        expires_at: None,
    });
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "huge ttlSeconds",
    );
}

#[test]
fn sandbox_containment() {
    let mut s = sandbox();
    assert_admitted(s.check(ed25519_ring()), "the example sandbox");
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "externalCalls",
    );
    assert!(d.reason.contains("externalCalls") && !d.reason.contains("persistentWrites"));
    s.spec.anatomy.containment.external_calls = false;
    s.spec.anatomy.containment.persistent_writes = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "persistentWrites",
    );
    assert!(d.reason.contains("persistentWrites") && !d.reason.contains("externalCalls"));
    s.spec.anatomy.containment.external_calls = true;
    let d = assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxContainment,
        "both",
    );
    assert!(
        d.reason.contains("externalCalls or persistentWrites"),
        "{}",
        d.reason
    );
    // Expiry is checked first.
    s.now = after(&s, SignedDuration::from_hours(24));
    assert_denied(
        s.check(ed25519_ring()),
        AdmissionCheck::SandboxNotExpired,
        "expired and open",
    );
}
