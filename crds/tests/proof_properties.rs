//! Property tests of the proof contract: the canonical hashes do not depend on how a manifest
//! is written (key order, whitespace, string escapes, number notation), any change to a
//! signature fails verification, and the spec hash follows the temperature.

mod common;

use agentgov_api::AgentSpec;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentMode, Economics, RoleClass, SandboxSpec};
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::VerifyFailure;
use agentgov_api::proof::verify;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use proptest::prelude::*;

fn arb_spec() -> impl Strategy<Value = AgentSpec> {
    let text = "[a-zA-Z0-9 .,:'\"\\\\/\n\té€😀-]{0,24}";
    (
        (0.0f64..=2.0, text, proptest::collection::vec(text, 0..4)),
        (
            prop_oneof![
                Just(RoleClass::Compliance),
                Just(RoleClass::Analysis),
                Just(RoleClass::Ideation)
            ],
            any::<bool>(),
        ),
        (
            proptest::option::of(0.0f64..1e6),
            proptest::option::of(0u16..3650),
            any::<(bool, bool)>(),
        ),
        proptest::option::of(1i64..1_000_000),
    )
        .prop_map(
            |((t, description, capabilities), (role, governed), (budget, days, (ext, pw)), ttl)| {
                let mut spec = governed_agent().spec;
                spec.anatomy
                    .reasoning
                    .as_mut()
                    .expect("reasoning")
                    .temperature = t;
                spec.description = description;
                spec.anatomy.capabilities = capabilities;
                spec.role_class = role;
                spec.mode = if governed {
                    AgentMode::Governed
                } else {
                    AgentMode::Sandbox
                };
                spec.anatomy.economics = budget.map(|b| Economics {
                    monthly_budget_usd: b,
                });
                spec.anatomy.memory.as_mut().expect("memory").retention_days = days.map(Into::into);
                spec.anatomy.containment.external_calls = ext;
                spec.anatomy.containment.persistent_writes = pw;
                spec.sandbox = ttl.map(|t| SandboxSpec {
                    ttl_seconds: Some(t),
                    expires_at: None,
                });
                spec
            },
        )
}

/// Writes JSON with keys in a random order, random whitespace, random string escapes and
/// random (equivalent) float notation, driven by a xorshift seed.
struct Scrambler(u64);

impl Scrambler {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn ws(&mut self, out: &mut String) {
        out.push_str(self.pick(&["", " ", "\n", "\t", "\r\n  ", "   "]));
    }

    fn string(&mut self, s: &str, out: &mut String) {
        if self.next().is_multiple_of(2) {
            out.push_str(&serde_json::to_string(s).expect("json"));
        } else {
            out.push('"');
            for unit in s.encode_utf16() {
                out.push_str(&format!("\\u{unit:04x}"));
            }
            out.push('"');
        }
    }

    fn emit(&mut self, value: &serde_json::Value, out: &mut String) {
        use serde_json::Value;
        self.ws(out);
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, (self.next() % (i as u64 + 1)) as usize);
                }
                out.push('{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.string(key, out);
                    self.ws(out);
                    out.push(':');
                    self.emit(value, out);
                }
                self.ws(out);
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.emit(item, out);
                }
                self.ws(out);
                out.push(']');
            }
            Value::String(s) => self.string(s, out),
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().expect("f64");
                out.push_str(&if self.next().is_multiple_of(2) {
                    format!("{f:e}")
                } else {
                    format!("{f:?}")
                });
            }
            other => out.push_str(&other.to_string()),
        }
        self.ws(out);
    }
}

/// Any JSON document, for the free-form `data.extra` of a policy bundle.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-zA-Z é\"]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{1,5}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The policy hash is over canonical JSON, so the free-form data cannot make it depend on
    /// key order (serde_json's `preserve_order`, if any dependency enables it, keeps the order).
    #[test]
    fn policy_hash_ignores_key_order_whitespace_and_escapes(extra in arb_json(), seed in 1u64..) {
        let mut policy = kat_policy();
        policy.data.extra = Some(serde_json::json!({"org": extra}));
        let hash = policy_hash(&policy).expect("hash");
        let mut text = String::new();
        Scrambler(seed).emit(&serde_json::to_value(&policy).expect("value"), &mut text);
        let parsed: agentgov_api::PolicyBundleSpec = serde_json::from_str(&text).expect("parses");
        prop_assert_eq!(policy_hash(&parsed).expect("hash"), hash);
    }

    #[test]
    fn spec_hash_ignores_field_order_whitespace_and_escapes(spec in arb_spec(), seed in 1u64..) {
        let hash = spec_hash(&spec).expect("hash");
        let value = serde_json::to_value(&spec).expect("value");
        let mut text = String::new();
        Scrambler(seed).emit(&value, &mut text);
        let parsed: AgentSpec = serde_json::from_str(&text).expect("scrambled JSON parses");
        prop_assert_eq!(&parsed, &spec, "{}", text);
        prop_assert_eq!(spec_hash(&parsed).expect("hash"), hash.clone());
        // And through YAML, the way manifests arrive.
        let yaml: AgentSpec = serde_yaml::from_str(&serde_yaml::to_string(&value).expect("yaml")).expect("yaml parses");
        prop_assert_eq!(spec_hash(&yaml).expect("hash"), hash);
    }

    #[test]
    fn any_single_byte_change_in_a_signature_fails(hmac in any::<bool>(), index in 0usize..64, flip in 1u8..=255) {
        let keys = if hmac { hmac_ring() } else { ed25519_ring() };
        let mut s = governed(keys);
        let mut signature = B64.decode(&s.proof().signature).expect("base64");
        let index = index % signature.len();
        signature[index] ^= flip;
        s.proof_mut().signature = B64.encode(signature);
        prop_assert_eq!(verify(keys, s.subject(), s.proof()), Err(VerifyFailure::BadSignature));
        let denial = s.check(keys).expect_err("a changed signature is denied");
        prop_assert_eq!(denial.code, DecisionCode::DenySignatureInvalid);
    }

    #[test]
    fn spec_hash_changes_with_temperature(a in 0.0f64..=2.0, b in 0.0f64..=2.0) {
        prop_assume!(a != b);
        let mut spec = governed_agent().spec;
        spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = a;
        let first = spec_hash(&spec).expect("hash");
        spec.anatomy.reasoning.as_mut().expect("reasoning").temperature = b;
        prop_assert_ne!(first, spec_hash(&spec).expect("hash"));
    }
}
