//! Test support (feature `testing`, for dev-dependencies only): the example manifests
//! `examples/agent-*.yaml` as typed objects, and builders over them. Every crate's tests take
//! their agent specs from here, so there is one fixture source per concept: a test that needs
//! another spec starts from an example and changes what it is about.
//!
//! The examples are compiled in, and `make crd-check` and `crds/tests/schema.rs` validate them
//! against the CRD schema; that they parse is checked below, so the `expect`s here cannot fire
//! in a test that uses them.

use crate::agent::SandboxSpec;
use crate::{Agent, AgentSpec};

/// `examples/agent-governed.yaml`: `invoice-auditor`, a compliance agent at temperature 0.2 with
/// a monthly budget of 250 USD, which the shipped policy allows without warnings.
pub const GOVERNED_YAML: &str = include_str!("../../examples/agent-governed.yaml");
/// `examples/agent-sandbox.yaml`: `research-scratchpad`, an ideation sandbox with
/// `ttlSeconds: 86400`.
pub const SANDBOX_YAML: &str = include_str!("../../examples/agent-sandbox.yaml");

/// The governed example, as `kubectl apply` sends it (no namespace, no uid, no status).
pub fn governed_agent() -> Agent {
    serde_yaml::from_str(GOVERNED_YAML).expect("examples/agent-governed.yaml is an Agent")
}

/// The spec of the governed example: allowed by the shipped policy (GOVERNED_VALID).
pub fn governed_spec() -> AgentSpec {
    governed_agent().spec
}

/// The sandbox example, as `kubectl apply` sends it.
pub fn sandbox_agent() -> Agent {
    serde_yaml::from_str(SANDBOX_YAML).expect("examples/agent-sandbox.yaml is an Agent")
}

/// The spec of the sandbox example (`ttlSeconds: 86400`).
pub fn sandbox_spec() -> AgentSpec {
    sandbox_agent().spec
}

/// `spec` with `ttl_seconds` as its sandbox TTL; `None` leaves `spec.sandbox` out, so the
/// operator's default TTL applies.
pub fn with_sandbox_ttl(mut spec: AgentSpec, ttl_seconds: Option<i64>) -> AgentSpec {
    spec.sandbox = ttl_seconds.map(|ttl| SandboxSpec {
        ttl_seconds: Some(ttl),
        expires_at: None,
    });
    spec
}

/// `spec` at `temperature` (the shipped policy's limits: compliance 0.3, analysis 0.7,
/// ideation 1.0).
pub fn with_temperature(mut spec: AgentSpec, temperature: f64) -> AgentSpec {
    if let Some(reasoning) = spec.anatomy.reasoning.as_mut() {
        reasoning.temperature = temperature;
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentMode, RoleClass};

    #[test]
    fn the_examples_parse_as_documented() {
        let governed = governed_spec();
        assert_eq!(governed.mode, AgentMode::Governed);
        assert_eq!(governed.role_class, RoleClass::Compliance);
        let economics = governed
            .anatomy
            .economics
            .as_ref()
            .map(|e| e.monthly_budget_usd);
        assert_eq!(economics, Some(250.0));
        let sandbox = sandbox_spec();
        assert_eq!(sandbox.mode, AgentMode::Sandbox);
        let ttl = sandbox.sandbox.as_ref().and_then(|s| s.ttl_seconds);
        assert_eq!(ttl, Some(86_400));
    }

    #[test]
    fn builders_change_only_what_they_name() {
        let hot = with_temperature(governed_spec(), 1.5);
        let temperature = hot.anatomy.reasoning.as_ref().map(|r| r.temperature);
        assert_eq!(temperature, Some(1.5));
        assert_eq!(with_temperature(hot, 0.2), governed_spec());
        assert_eq!(
            with_sandbox_ttl(sandbox_spec(), Some(86_400)),
            sandbox_spec()
        );
        assert!(with_sandbox_ttl(sandbox_spec(), None).sandbox.is_none());
    }
}
