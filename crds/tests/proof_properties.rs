//! Property tests of the proof contract: the canonical hashes do not depend on how a manifest
//! is written (key order, whitespace, string escapes, number notation), any change to a
//! signature or to any other field of a (version 2) proof fails verification, a proof verifies
//! for its own agent object only, the order of approvers and promotions does not matter to the
//! signer, and the spec hash follows the temperature.

mod common;

use agentgov_api::AgentSpec;
use agentgov_api::admission::DecisionCode;
use agentgov_api::agent::{AgentMode, Economics, RoleClass, SandboxSpec};
use agentgov_api::hash::{policy_hash, spec_hash};
use agentgov_api::keyring::{Algorithm, VerifyFailure};
use agentgov_api::proof::{Approver, ProofBundle, verify};
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

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
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
                self.shuffle(&mut entries);
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

/// The fields of a proof, each changed by [`change`].
const PROOF_FIELDS: usize = 15;

/// Change field `field` of `p`, to something made of `text` and `n`.
fn change(p: &mut ProofBundle, field: usize, text: &str, n: u32) {
    match field {
        0 => p.version = n,
        1 => p.spec_hash = text.into(),
        2 => p.policy_hash = text.into(),
        3 => p.signature = B64.encode(text),
        4 => {
            p.algorithm = match p.algorithm {
                Algorithm::Ed25519 => Algorithm::HmacSha256,
                Algorithm::HmacSha256 => Algorithm::Ed25519,
            }
        }
        5 => p.key_id = text.into(),
        6 => p.signed_at = text.into(),
        7 => p.agent_uid = text.into(),
        8 => p.approvers[0].username = text.into(),
        9 => p.approvers[0].uid = text.into(),
        10 => p.approvers.push(Approver {
            username: text.into(),
            uid: String::new(),
        }),
        11 => p.approvers.clear(),
        12 => p.promotions[0] = text.into(),
        13 => p.promotions.push(text.into()),
        _ => p.promotions.clear(),
    }
}

proptest! {
    /// Any one field of a proof changed (what it signs, its key, algorithm or signature, the
    /// object it is for, who approved, which promotions): it no longer verifies, and admission
    /// refuses the agent.
    #[test]
    fn any_change_to_any_field_of_a_proof_fails(
        hmac in any::<bool>(),
        field in 0..PROOF_FIELDS,
        text in "[a-zA-Z0-9:@./+=-]{0,44}",
        n in any::<u32>(),
    ) {
        let keys = if hmac { hmac_ring() } else { ed25519_ring() };
        let mut s = governed(keys);
        let original = s.proof().clone();
        change(s.proof_mut(), field, &text, n);
        prop_assume!(*s.proof() != original);
        prop_assert!(verify(&both_keys(&[]), s.subject(), s.proof()).is_err(), "{:?}", s.proof());
        let denial = s.check(&both_keys(&[])).expect_err("a changed proof is denied");
        prop_assert!(!denial.code.is_allow());
    }

    /// A proof verifies for the agent object it was signed for: not for another namespace,
    /// name or uid (a copy, or a re-created agent of the same name).
    #[test]
    fn a_proof_verifies_for_its_own_agent_object_only(
        hmac in any::<bool>(),
        part in 0usize..3,
        text in "[a-z0-9-]{0,40}",
    ) {
        let keys = if hmac { hmac_ring() } else { ed25519_ring() };
        let mut s = governed(keys);
        match part {
            0 => s.namespace = text,
            1 => s.name = text,
            _ => s.uid = text,
        }
        let signed = governed(keys);
        prop_assume!(s.subject() != signed.subject());
        prop_assert_eq!(verify(keys, s.subject(), s.proof()), Err(VerifyFailure::BadSignature));
        let denial = s.check(keys).expect_err("a proof for another agent is denied");
        prop_assert_eq!(denial.code, DecisionCode::DenySignatureInvalid);
    }

    /// Approvers and promotions are signed as sets: any order, any repeats, one proof; and the
    /// proof lists them sorted, once each.
    #[test]
    fn approvers_and_promotions_sign_the_same_in_any_order(
        hmac in any::<bool>(),
        approvers in proptest::collection::vec(("[a-c]{1,2}", "[x-z]{0,1}"), 1..6),
        promotions in proptest::collection::vec("[0-9a-f]{1,3}", 0..6),
        seed in 1u64..,
    ) {
        let keys = if hmac { hmac_ring() } else { ed25519_ring() };
        let approvers: Vec<Approver> = approvers
            .into_iter()
            .map(|(username, uid)| Approver { username, uid })
            .collect();
        let mut s = governed(keys);
        s.sign_claims(keys, &approvers, &promotions);
        let mut shuffled = governed(keys);
        let mut rng = Scrambler(seed);
        let mut a2 = approvers.clone();
        a2.push(approvers[(rng.next() % approvers.len() as u64) as usize].clone());
        rng.shuffle(&mut a2);
        let mut p2 = promotions.clone();
        p2.extend(promotions.first().cloned());
        rng.shuffle(&mut p2);
        shuffled.sign_claims(keys, &a2, &p2);
        prop_assert_eq!(shuffled.proof(), s.proof());
        let listed = &s.proof().approvers;
        prop_assert!(listed.windows(2).all(|w| w[0] < w[1]), "{:?}", listed);
        prop_assert!(approvers.iter().all(|a| listed.contains(a)));
        let listed = &s.proof().promotions;
        prop_assert!(listed.windows(2).all(|w| w[0] < w[1]), "{:?}", listed);
        prop_assert!(promotions.iter().all(|p| listed.contains(p)));
        prop_assert!(s.check(keys).is_ok());
    }

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
