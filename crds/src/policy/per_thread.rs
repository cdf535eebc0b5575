//! Each thread's own copy of a compiled bundle's RVM program and data document.
//!
//! regorus counts its values' references atomically (its `arc` feature), and an evaluation
//! clones the program's literals and the parts of the data document it reads. Threads that
//! evaluate one shared program and data write the same reference counts from every core: on two
//! cores, two threads evaluated 1.1× as many inputs a second as one. So a thread that evaluates
//! a bundle again compiles it once more, for itself, and keeps its copy while the engine lives
//! (a few per thread: the bundles in force, a namespace's and the cluster floor). Its first
//! evaluation runs on the shared copy: a thread that evaluates once and ends (the webhook's
//! blocking pool lets an idle thread go after ten seconds) is not worth a compile.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use regorus::Value;
use regorus::rvm::program::Program;

use super::{Compiled, Source};

/// The program and data a thread evaluates the engine compiled from `of` with.
struct Copy {
    of: Weak<Source>,
    program: Arc<Program>,
    data: Value,
    /// Compiled by this thread; else the engine's shared program and data.
    own: bool,
}

impl Copy {
    fn shared(source: &Arc<Source>, program: &Arc<Program>, data: &Value) -> Self {
        Copy {
            of: Arc::downgrade(source),
            program: Arc::clone(program),
            data: data.clone(),
            own: false,
        }
    }

    /// Compiled again from `source`. Should that fail (it did not for the shared engine, and it
    /// is the same text), the shared program and data, for good.
    fn own(source: &Arc<Source>, program: &Arc<Program>, data: &Value) -> Self {
        match Compiled::of(source) {
            Ok(Compiled {
                program: Some(program),
                data,
                ..
            }) => Copy {
                of: Arc::downgrade(source),
                program,
                data,
                own: true,
            },
            _ => Copy {
                own: true,
                ..Copy::shared(source, program, data)
            },
        }
    }
}

/// The engines a thread keeps a copy of. A thread that evaluates more (a webhook judging
/// many namespaces' bundles) compiles the least recently used again when it comes back.
const PER_THREAD: usize = 4;

thread_local! {
    /// The most recently used last.
    static COPIES: RefCell<Vec<Copy>> = const { RefCell::new(Vec::new()) };
}

/// The program and data this thread evaluates the engine compiled from `source` with (its
/// shared `program` and `data` the first time).
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
            None => Copy::shared(source, program, data),
            Some(copy) if copy.own => copy,
            Some(_) => Copy::own(source, program, data),
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

    /// In a thread of its own, so that no other test's engines are counted.
    fn on_a_new_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    #[test]
    fn a_thread_evaluates_again_on_its_own_copy_while_the_engine_lives() {
        on_a_new_thread(|| {
            let engine = engine();
            assert!(engine.uses_vm());
            assert_eq!(held(), 0);
            assert!(Arc::ptr_eq(&ours(&engine), shared(&engine)));
            assert_eq!(held(), 1);
            let first = answer(&engine);
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
            let mut answers = Vec::new();
            for engine in &engines {
                answers.push(answer(engine));
                answers.push(answer(engine));
            }
            assert_eq!(held(), PER_THREAD);
            assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
            // The last four keep their own copies; the first went, and starts on the shared
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
                    let answers = [answer(&engine), answer(&engine)];
                    (ours(&engine), answers)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (program, answers) in &results {
            assert_eq!(answers, &[alone.clone(), alone.clone()]);
            assert!(!Arc::ptr_eq(program, shared(&engine)));
        }
        assert!(!Arc::ptr_eq(&results[0].0, &results[1].0));
    }
}
