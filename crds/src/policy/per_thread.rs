//! Each thread's own copy of a compiled bundle's RVM program and data document.
//!
//! regorus counts its values' references atomically (its `arc` feature), and an evaluation
//! clones the program's literals and the parts of the data document it reads. Threads that
//! evaluate one shared program and data write the same reference counts from every core: on two
//! cores, two threads evaluated 1.1–1.6× as many inputs a second as one. So a thread that keeps
//! evaluating a bundle compiles it once more, for itself, and keeps its copy while the engine
//! lives (a few per thread: the bundles in force, a namespace's and the cluster floor). Until
//! then it evaluates on the shared copy: a compile (2–4 ms) costs as much as some 50
//! evaluations, so a thread that evaluates a bundle a few times and ends (the webhook's
//! blocking pool lets an idle thread go after ten seconds), or that turns through more bundles
//! than it keeps (many namespaces with bundles of their own), never pays one.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use regorus::Value;
use regorus::rvm::program::Program;

use super::{Compiled, Source};

/// What a thread keeps of the engine compiled from `of`: the program and data it evaluates
/// with.
struct Kept {
    of: Weak<Source>,
    program: Arc<Program>,
    data: Value,
    /// Compiled by this thread; else the engine's shared program and data.
    own: bool,
    /// Evaluations on this thread since it kept the engine.
    uses: u32,
}

impl Kept {
    fn shared(source: &Arc<Source>, program: &Arc<Program>, data: &Value) -> Self {
        Kept {
            of: Arc::downgrade(source),
            program: Arc::clone(program),
            data: data.clone(),
            own: false,
            uses: 1,
        }
    }

    /// Compiled again from `source`. Should that fail (it did not for the shared engine, and it
    /// is the same text), the shared program and data, for good.
    fn own(self, source: &Arc<Source>) -> Self {
        match Compiled::of(source) {
            Ok(Compiled {
                program: Some(program),
                data,
                ..
            }) => Kept {
                program,
                data,
                own: true,
                ..self
            },
            _ => Kept { own: true, ..self },
        }
    }
}

/// The engines a thread keeps (a copy of, or counts the uses of). A thread that evaluates more
/// (the operator judging many namespaces' bundles) drops the least recently used.
const PER_THREAD: usize = 8;

/// The evaluation of an engine, on one thread while it keeps the engine, that compiles the
/// thread's own copy: about what the compile costs, in evaluations.
const OWN_AFTER: u32 = 64;

thread_local! {
    /// The most recently used last.
    static COPIES: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// The program and data this thread evaluates the engine compiled from `source` with (its
/// shared `program` and `data` until its [`OWN_AFTER`]th evaluation while it keeps the engine).
pub(super) fn program_and_data(
    source: &Arc<Source>,
    program: &Arc<Program>,
    data: &Value,
) -> (Arc<Program>, Value) {
    COPIES.with_borrow_mut(|copies| {
        // An engine no one holds any more is not evaluated again.
        copies.retain(|copy| copy.of.strong_count() > 0);
        let found = copies
            .iter()
            .position(|copy| std::ptr::eq(copy.of.as_ptr(), Arc::as_ptr(source)));
        let copy = match found.map(|at| copies.remove(at)) {
            None => Kept::shared(source, program, data),
            Some(copy) if copy.own => copy,
            Some(mut copy) => {
                copy.uses += 1;
                if copy.uses >= OWN_AFTER {
                    copy.own(source)
                } else {
                    copy
                }
            }
        };
        let ours = (Arc::clone(&copy.program), copy.data.clone());
        copies.push(copy);
        if copies.len() > PER_THREAD {
            copies.remove(0);
        }
        ours
    })
}

/// How many engines this thread holds a copy of (for tests).
#[cfg(test)]
fn held() -> usize {
    COPIES.with_borrow_mut(|copies| {
        copies.retain(|copy| copy.of.strong_count() > 0);
        copies.len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyDecision, PolicyEngine, default_bundle_spec};

    fn engine() -> PolicyEngine {
        PolicyEngine::compile(&default_bundle_spec()).unwrap()
    }

    fn shared(engine: &PolicyEngine) -> &Arc<Program> {
        engine.program.as_ref().unwrap()
    }

    /// The program this thread evaluates `engine` with (an evaluation of it, as far as the
    /// copies go).
    fn ours(engine: &PolicyEngine) -> Arc<Program> {
        program_and_data(&engine.source, shared(engine), &engine.data).0
    }

    fn answer(engine: &PolicyEngine) -> PolicyDecision {
        engine.evaluate_json("{}").unwrap()
    }

    /// Evaluated as often as it takes this thread to compile its own copy; the answers.
    fn answers(engine: &PolicyEngine) -> Vec<PolicyDecision> {
        (0..OWN_AFTER).map(|_| answer(engine)).collect()
    }

    /// In a thread of its own, so that no other test's engines are counted.
    fn on_a_new_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    #[test]
    fn a_thread_that_keeps_evaluating_an_engine_does_so_on_its_own_copy() {
        on_a_new_thread(|| {
            let engine = engine();
            assert!(engine.uses_vm());
            assert_eq!(held(), 0);
            assert!(Arc::ptr_eq(&ours(&engine), shared(&engine)));
            assert_eq!(held(), 1);
            let first = answer(&engine);
            // On the shared copy until the OWN_AFTER-th evaluation.
            let before: Vec<_> = (2..OWN_AFTER - 2).map(|_| answer(&engine)).collect();
            assert!(before.iter().all(|a| *a == first));
            assert!(Arc::ptr_eq(&ours(&engine), shared(&engine)));
            let own = ours(&engine);
            assert!(!Arc::ptr_eq(&own, shared(&engine)));
            assert_eq!(answer(&engine), first);
            // A clone is the same engine: the same copy.
            let clone = engine.clone();
            assert!(Arc::ptr_eq(&ours(&clone), &own));
            assert_eq!(answer(&clone), first);
            assert_eq!(held(), 1);
            drop(engine);
            assert_eq!(held(), 1);
            drop(clone);
            assert_eq!(held(), 0);
        });
    }

    #[test]
    fn a_thread_keeps_a_few_copies_the_least_recently_used_go_first() {
        on_a_new_thread(|| {
            let engines: Vec<PolicyEngine> = (0..PER_THREAD + 1).map(|_| engine()).collect();
            let answers: Vec<PolicyDecision> = engines.iter().flat_map(answers).collect();
            assert_eq!(held(), PER_THREAD);
            assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
            // The last ones keep their own copies; the first went, and starts on the shared
            // one again.
            let last = engines.last().unwrap();
            assert!(!Arc::ptr_eq(&ours(last), shared(last)));
            assert!(Arc::ptr_eq(&ours(&engines[0]), shared(&engines[0])));
            assert_eq!(held(), PER_THREAD);
        });
    }

    #[test]
    fn threads_evaluating_one_engine_answer_alike_each_on_its_own_copy() {
        let engine = engine();
        let alone = answer(&engine);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let answers = answers(&engine);
                    (ours(&engine), answers)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (program, answers) in &results {
            assert!(answers.iter().all(|a| *a == alone));
            assert!(!Arc::ptr_eq(program, shared(&engine)));
        }
        assert!(!Arc::ptr_eq(&results[0].0, &results[1].0));
    }
}
