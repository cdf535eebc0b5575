//! The promotion policy's differential-test inputs (crds/tests/opa_differential.rs): a
//! fixed-seed generator of input and data documents — the test table's cases, the boundaries
//! of every rule, missing, null and wrong-typed fields at every level, odd actors and lists,
//! and random combinations. Included with `#[path]`, next to `mod common;` and
//! `mod promotion_cases;`.
#![allow(dead_code)]

use serde_json::{Value, json};

use crate::promotion_cases;

const SEED: u64 = 0x5eed_a6e7_60f0_0001;
const RANDOM_CASES: usize = 1200;
const BUDGET_LINES: usize = 150;
const NAMESPACE_TOTALS: usize = 60;

/// splitmix64: small, fixed, good enough to spread choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    /// Uniform in [0, max).
    fn float(&mut self, max: f64) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * max
    }
}

pub struct Case {
    pub label: String,
    pub input: Value,
    pub limits: Value,
}

/// A value to put at a path: `None` removes the key.
type Slot = Option<Value>;

/// Set (or, with `None`, remove) the value at `path`; the empty path is the whole document.
/// Intermediate objects must exist.
pub fn set(doc: &mut Value, path: &[&str], value: Slot) {
    let Some((last, parents)) = path.split_last() else {
        *doc = value.unwrap_or(Value::Null);
        return;
    };
    let mut at = doc;
    for key in parents {
        at = &mut at[*key];
    }
    let object = at.as_object_mut().expect("the parent is an object");
    match value {
        Some(v) => {
            object.insert((*last).to_string(), v);
        }
        None => {
            object.remove(*last);
        }
    }
}

fn n(x: f64) -> Value {
    json!(x)
}

/// Values of every JSON type, including the empty and the almost-right.
fn odd_values() -> Vec<Slot> {
    [
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("x"),
        json!("0.2"),
        json!([]),
        json!([""]),
        json!(["x"]),
        json!([1]),
        json!({}),
        json!({"a": 1}),
    ]
    .into_iter()
    .map(Some)
    .chain([None])
    .collect()
}

const INPUT_PATHS: &[&[&str]] = &[
    &["actor"],
    &["actor", "username"],
    &["actor", "groups"],
    &["actor", "roles"],
    &["actor", "authorizedToPromote"],
    &["agent"],
    &["agent", "spec"],
    &["agent", "spec", "roleClass"],
    &["agent", "spec", "anatomy"],
    &["agent", "spec", "anatomy", "reasoning"],
    &["agent", "spec", "anatomy", "reasoning", "model"],
    &["agent", "spec", "anatomy", "reasoning", "temperature"],
    &["agent", "spec", "anatomy", "inputs"],
    &["agent", "spec", "anatomy", "actions"],
    &["agent", "spec", "anatomy", "memory"],
    &["agent", "spec", "anatomy", "memory", "kind"],
    &["agent", "spec", "anatomy", "memory", "retentionDays"],
    &["agent", "spec", "anatomy", "capabilities"],
    &["agent", "spec", "anatomy", "containment"],
    &["agent", "spec", "anatomy", "containment", "externalCalls"],
    &[
        "agent",
        "spec",
        "anatomy",
        "containment",
        "persistentWrites",
    ],
    &["agent", "spec", "anatomy", "economics"],
    &["agent", "spec", "anatomy", "economics", "monthlyBudgetUsd"],
];

const LIMIT_PATHS: &[&[&str]] = &[
    &[],
    &["maxMonthlyBudgetUsd"],
    &["temperatureLimits"],
    &["temperatureLimits", "compliance"],
    &["temperatureLimits", "analysis"],
    &["temperatureLimits", "ideation"],
    &["promoterRoles"],
    &["extra"],
];

const ROLE_CLASSES: [&str; 3] = ["compliance", "analysis", "ideation"];

/// Around a limit: at it, one float step either side, a cent either side, and the ends.
fn around(limit: f64) -> Vec<f64> {
    vec![
        limit,
        limit.next_up(),
        limit.next_down(),
        limit + 0.01,
        limit - 0.01,
        0.0,
        2.0,
        0.30000000000000004,
        0.29999999999999993,
    ]
}

struct Generator {
    base: Value,
    limits: Value,
    cases: Vec<Case>,
}

impl Generator {
    fn push(&mut self, label: String, input: Value, limits: Value) {
        self.cases.push(Case {
            label,
            input,
            limits,
        });
    }

    fn table(&mut self, table: &promotion_cases::Table) {
        for case in &table.cases {
            let (input, limits) = (case.input(&table.base), case.limits(&table.limits));
            self.push(format!("table: {}", case.name), input, limits);
        }
    }

    fn temperature_boundaries(&mut self) {
        let limits = [
            0.3,
            0.7,
            1.0,
            0.0,
            0.1,
            0.5,
            2.0,
            1e-5,
            0.00012,
            0.30000000000000004,
        ];
        for role in ROLE_CLASSES {
            for limit in limits {
                for t in around(limit) {
                    let mut input = self.base.clone();
                    set(
                        &mut input,
                        &["agent", "spec", "roleClass"],
                        Some(json!(role)),
                    );
                    let path = ["agent", "spec", "anatomy", "reasoning", "temperature"];
                    set(&mut input, &path, Some(n(t)));
                    let mut data = self.limits.clone();
                    set(&mut data, &["temperatureLimits", role], Some(n(limit)));
                    let label = format!("temperature {t:?} under {role} {limit:?}");
                    self.push(label, input, data);
                }
            }
        }
    }

    fn budget_boundaries(&mut self) {
        let limits: [f64; 18] = [
            1000.0,
            200.0,
            0.0,
            1e6,
            1234567.5,
            0.1,
            1000.1,
            333.33,
            1e300,
            9e15,
            1.5e16,
            1e10,
            9999999999.99,
            1429.77,
            1000.00625,
            2.675,
            0.005,
            1234.56789,
        ];
        for limit in limits {
            let line = limit * 0.8;
            let budgets = [
                Some(limit),
                Some(limit.next_up()),
                Some(limit.next_down()),
                Some(line),
                Some(line.next_up()),
                Some(line.next_down()),
                Some(line + 0.01),
                Some(limit + 0.01),
                Some(limit - 0.01),
                Some(0.0),
                Some(1e-5),
                Some(800.005),
                Some(1143.815),
                Some(2.675),
                None,
            ];
            for budget in budgets {
                let mut input = self.base.clone();
                let path = ["agent", "spec", "anatomy", "economics", "monthlyBudgetUsd"];
                set(&mut input, &path, budget.map(n));
                let mut data = self.limits.clone();
                set(&mut data, &["maxMonthlyBudgetUsd"], Some(n(limit)));
                self.push(format!("budget {budget:?} under {limit:?}"), input, data);
            }
        }
    }

    /// Limits of up to five decimals and up to 10^10 (where the 80 % line is exact on both
    /// engines), with budgets at the line, one float step either side, and at 0.8 * limit.
    fn budget_lines(&mut self, rng: &mut Rng) {
        for _ in 0..BUDGET_LINES {
            let decimals = rng.below(6) as i32;
            let scale = 10f64.powi(decimals);
            let magnitude = rng.pick(&[1e3, 1e5, 1e7, 1e10]);
            let limit = (rng.float(magnitude) * scale).round() / scale;
            let line = (limit * 800.0).round() / 1000.0;
            for budget in [line, line.next_up(), line.next_down(), limit * 0.8] {
                let mut input = self.base.clone();
                let path = ["agent", "spec", "anatomy", "economics", "monthlyBudgetUsd"];
                set(&mut input, &path, Some(n(budget)));
                let mut data = self.limits.clone();
                set(&mut data, &["maxMonthlyBudgetUsd"], Some(n(limit)));
                self.push(
                    format!("budget {budget:?} at the line of {limit:?}"),
                    input,
                    data,
                );
            }
        }
    }

    /// The namespace's total: amounts in cents up to 10^8 dollars, with the allocation at the
    /// total less the budget, a cent either side, and odd values, so both engines are held to
    /// the same answer at the line.
    fn namespace_totals(&mut self, rng: &mut Rng) {
        for _ in 0..NAMESPACE_TOTALS {
            let cents = |rng: &mut Rng, max: f64| (rng.float(max) * 100.0).round() / 100.0;
            let magnitude = rng.pick(&[1e3, 1e5, 1e8]);
            let total = cents(rng, magnitude);
            let budget = cents(rng, total.max(0.01));
            let at_line = ((total - budget) * 100.0).round() / 100.0;
            for allocated in [
                json!(at_line),
                json!(at_line + 0.01),
                json!((at_line - 0.01).max(0.0)),
                json!(0),
                json!(null),
                json!("1"),
                json!(-1),
            ] {
                let mut input = self.base.clone();
                let path = ["agent", "spec", "anatomy", "economics", "monthlyBudgetUsd"];
                set(&mut input, &path, Some(n(budget)));
                set(
                    &mut input,
                    &["namespace"],
                    Some(json!({"allocatedMonthlyBudgetUsd": allocated})),
                );
                let mut data = self.limits.clone();
                set(&mut data, &["maxNamespaceMonthlyBudgetUsd"], Some(n(total)));
                self.push(
                    format!("namespace {allocated} + {budget:?} under a total of {total:?}"),
                    input,
                    data,
                );
            }
        }
    }

    fn odd_fields(&mut self) {
        for path in INPUT_PATHS {
            for value in odd_values() {
                let mut input = self.base.clone();
                set(&mut input, path, value.clone());
                let label = format!("input.{} = {value:?}", path.join("."));
                self.push(label, input, self.limits.clone());
            }
        }
        for path in LIMIT_PATHS {
            for value in odd_values() {
                if path.is_empty() && value.is_none() {
                    continue; // `with` cannot remove the document; null stands for it
                }
                let mut data = self.limits.clone();
                set(&mut data, path, value.clone());
                let label = format!("limits.{} = {value:?}", path.join("."));
                self.push(label, self.base.clone(), data);
            }
        }
    }

    fn actors(&mut self) {
        let actors = [
            None,
            Some(Value::Null),
            Some(json!("alice")),
            Some(json!(["alice"])),
            Some(json!(7)),
            Some(json!({})),
            Some(json!({"username": "bob"})),
            Some(json!({"username": "bob", "authorizedToPromote": true})),
            Some(json!({"username": "bob", "authorizedToPromote": "true"})),
            Some(json!({"username": "bob", "authorizedToPromote": 1})),
            Some(json!({"username": "bob", "roles": ["agent_admin"]})),
            Some(json!({"username": "bob", "roles": "agent_admin"})),
            Some(json!({"username": "bob", "roles": [["agent_admin"]]})),
            Some(json!({"username": "bob", "groups": ["policy_admin", 1]})),
            Some(json!({"username": "", "groups": ["dev", "policy_admin"]})),
            Some(json!({"username": ["bob"], "groups": ["policy_admin"]})),
            Some(json!({"username": "bob", "groups": null, "roles": null})),
        ];
        let roles = [
            None,
            Some(json!(["agent_admin", "policy_admin"])),
            Some(json!([])),
            Some(json!(["policy_admin"])),
            Some(json!("agent_admin")),
            Some(json!([1, "agent_admin"])),
            Some(json!({"agent_admin": true})),
            Some(Value::Null),
        ];
        for actor in &actors {
            for promoter_roles in &roles {
                let mut input = self.base.clone();
                set(&mut input, &["actor"], actor.clone());
                let mut data = self.limits.clone();
                set(&mut data, &["promoterRoles"], promoter_roles.clone());
                let label = format!("actor {actor:?} with promoterRoles {promoter_roles:?}");
                self.push(label, input, data);
            }
        }
    }

    fn lists(&mut self) {
        let lists = [
            json!([""]),
            json!(["", "x"]),
            json!(["x", ""]),
            json!([" "]),
            json!(["x", "y"]),
            json!(["x", null]),
            json!(["x", ["y"]]),
            json!([{}]),
        ];
        for field in ["inputs", "actions", "capabilities"] {
            for list in &lists {
                let mut input = self.base.clone();
                set(
                    &mut input,
                    &["agent", "spec", "anatomy", field],
                    Some(list.clone()),
                );
                let label = format!("anatomy.{field} = {list}");
                self.push(label, input, self.limits.clone());
            }
        }
    }

    /// Every field drawn from a pool of good and bad values, under one of a pool of data
    /// documents (a pool, so the engines compiled stay few).
    fn random(&mut self, rng: &mut Rng) {
        let data_pool = self.data_pool();
        for i in 0..RANDOM_CASES {
            let mut input = self.base.clone();
            let anatomy = ["agent", "spec", "anatomy"];
            let at = |field: &'static str| [anatomy[0], anatomy[1], anatomy[2], field];
            let good = |rng: &mut Rng| rng.percent(70);
            if !good(rng) {
                let role = rng.pick(&[
                    None,
                    Some(Value::Null),
                    Some(json!("ops")),
                    Some(json!("")),
                    Some(json!(1)),
                ]);
                set(&mut input, &["agent", "spec", "roleClass"], role);
            } else {
                let role = rng.pick(&ROLE_CLASSES);
                set(
                    &mut input,
                    &["agent", "spec", "roleClass"],
                    Some(json!(role)),
                );
            }
            let temperature = if good(rng) {
                Some(n(rng.float(2.0)))
            } else if good(rng) {
                let limit = rng.pick(&[0.3, 0.7, 1.0]);
                Some(n(rng.pick(&around(limit))))
            } else {
                rng.pick(&odd_values())
            };
            let reasoning = if good(rng) {
                let mut r = json!({"model": "gpt-4o"});
                set(&mut r, &["temperature"], temperature);
                Some(r)
            } else {
                rng.pick(&odd_values())
            };
            set(&mut input, &at("reasoning"), reasoning);
            for field in ["inputs", "actions", "capabilities"] {
                let list = if good(rng) {
                    Some(rng.pick(&[json!(["a"]), json!(["a", "b"])]))
                } else {
                    rng.pick(&[
                        None,
                        Some(json!([])),
                        Some(json!([""])),
                        Some(json!(["a", ""])),
                        Some(json!("a")),
                        Some(Value::Null),
                        Some(json!([1])),
                    ])
                };
                set(&mut input, &at(field), list);
            }
            let memory = if good(rng) {
                rng.pick(&[
                    json!({"kind": "persistent", "retentionDays": 90}),
                    json!({"kind": "persistent"}),
                    json!({"kind": "session"}),
                    json!({"kind": "none"}),
                    json!({"kind": "persistent", "retentionDays": 0}),
                ])
            } else {
                rng.pick(&[
                    json!({"kind": "forever"}),
                    json!({}),
                    Value::Null,
                    json!({"kind": "persistent", "retentionDays": "90"}),
                    json!({"kind": "persistent", "retentionDays": 1.5}),
                    json!({"kind": "persistent", "retentionDays": -1}),
                    json!("persistent"),
                ])
            };
            set(&mut input, &at("memory"), Some(memory));
            let containment = if good(rng) {
                let flags = [false, false, false, true];
                Some(
                    json!({"externalCalls": rng.pick(&flags), "persistentWrites": rng.pick(&flags)}),
                )
            } else {
                rng.pick(&[
                    None,
                    Some(json!({})),
                    Some(Value::Null),
                    Some(json!("x")),
                    Some(json!({"externalCalls": "false"})),
                    Some(json!({"persistentWrites": null})),
                ])
            };
            set(&mut input, &at("containment"), containment);
            let economics = if good(rng) {
                let budget = match rng.below(4) {
                    0 => rng.float(2000.0).round(),
                    1 => (rng.float(2000.0) * 100.0).round() / 100.0,
                    2 => (rng.float(2000.0) * 1000.0).round() / 1000.0,
                    _ => rng.float(1500.0),
                };
                Some(json!({ "monthlyBudgetUsd": budget }))
            } else {
                rng.pick(&[
                    None,
                    Some(json!({})),
                    Some(Value::Null),
                    Some(json!({"monthlyBudgetUsd": "100"})),
                    Some(json!({"monthlyBudgetUsd": -1})),
                    Some(json!({"monthlyBudgetUsd": 800})),
                    Some(json!({"monthlyBudgetUsd": 1e7})),
                    Some(json!(100)),
                ])
            };
            set(&mut input, &at("economics"), economics);
            let actor = if good(rng) {
                rng.pick(&[
                    json!({"username": "alice", "groups": [], "roles": [], "authorizedToPromote": true}),
                    json!({"username": "bob", "roles": ["agent_admin"]}),
                    json!({"username": "carol", "groups": ["dev", "policy_admin"]}),
                    json!({"username": "mallory", "groups": ["dev"], "authorizedToPromote": false}),
                ])
            } else {
                rng.pick(&[
                    Value::Null,
                    json!({}),
                    json!("alice"),
                    json!({"username": "eve", "roles": "agent_admin"}),
                    json!({"username": "eve", "authorizedToPromote": "yes"}),
                ])
            };
            set(&mut input, &["actor"], Some(actor));
            let runtime = rng.pick(&[
                None,
                None,
                Some(json!({"images": [
                    "ghcr.io/acme/agent@sha256:4f2b9c1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
                ]})),
                Some(json!({"images": []})),
                Some(json!({"images": [""]})),
                Some(json!({"images": "x"})),
                Some(json!("x")),
            ]);
            set(&mut input, &["agent", "spec", "runtime"], runtime);
            let data = rng.pick(&data_pool);
            self.push(format!("random #{i}"), input, data);
        }
    }

    fn data_pool(&self) -> Vec<Value> {
        let mut pool = vec![self.limits.clone(); 6];
        let changes: [(&[&str], Slot); 13] = [
            (&["maxMonthlyBudgetUsd"], Some(n(500.0))),
            (&["maxMonthlyBudgetUsd"], Some(n(1234.5))),
            (&["maxMonthlyBudgetUsd"], None),
            (&["temperatureLimits", "compliance"], Some(n(0.5))),
            (&["temperatureLimits", "ideation"], Some(n(0.75))),
            (&["temperatureLimits", "analysis"], None),
            (&["temperatureLimits"], Some(json!("0.3"))),
            (&["promoterRoles"], Some(json!(["release_manager"]))),
            (&["promoterRoles"], None),
            (&[], Some(Value::Null)),
            (&["runtime"], Some(json!({"requireImages": true}))),
            (&["runtime"], Some(json!({"requireImages": false}))),
            (&["runtime"], Some(json!({"requireImages": "yes"}))),
        ];
        for (path, value) in changes {
            let mut data = self.limits.clone();
            set(&mut data, path, value);
            pool.push(data);
        }
        pool
    }
}

/// Every case, in a fixed order.
pub fn generate() -> Vec<Case> {
    let table = promotion_cases::load();
    let mut base = table.base.clone();
    // A budget under the 80 % line, so boundary cases start from a clean decision.
    let path = ["agent", "spec", "anatomy", "economics", "monthlyBudgetUsd"];
    set(&mut base, &path, Some(n(250.0)));
    let mut generator = Generator {
        base,
        limits: table.limits.clone(),
        cases: Vec::new(),
    };
    generator.table(&table);
    generator.temperature_boundaries();
    generator.budget_boundaries();
    generator.odd_fields();
    generator.actors();
    generator.lists();
    let mut rng = Rng(SEED);
    generator.budget_lines(&mut rng);
    generator.namespace_totals(&mut rng);
    generator.random(&mut rng);
    generator.cases
}
