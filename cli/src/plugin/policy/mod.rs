//! `policy test|eval|preview` as plain functions over plain data: reading a PolicyBundle
//! manifest and the bundle in force (`bundle`), running a bundle's `test_` rules like `opa test`
//! (`suite`), and what a bundle says of agents (`verdict`: one agent's answer, and a candidate
//! bundle's effect on every live agent). Policies are evaluated by the API crate's
//! `PolicyEngine`, the one the operator and the webhook call, and its answer becomes a
//! governance status by the API crate's `Standing`, the rule the operator applies.

pub mod bundle;
pub mod suite;
pub mod verdict;
