use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant, sleep};

use super::*;
use crate::cache;

/// What a test's reconciles did: each start and end, by agent, in paused time since `t0`.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<(String, &'static str, Duration)>>,
}

impl Log {
    fn push(&self, t0: Instant, name: &str, what: &'static str) {
        self.events
            .lock()
            .unwrap()
            .push((name.to_string(), what, t0.elapsed()));
    }

    fn starts(&self, name: &str) -> Vec<Duration> {
        self.of(name, "start")
    }

    fn of(&self, name: &str, what: &str) -> Vec<Duration> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, w, _)| n == name && *w == what)
            .map(|(_, _, at)| *at)
            .collect()
    }

    /// The most reconciles that ran at once.
    fn most_at_once(&self) -> usize {
        let mut now = 0usize;
        let mut most = 0;
        for (_, what, _) in self.events.lock().unwrap().iter() {
            if *what == "start" {
                now += 1;
                most = most.max(now);
            } else {
                now -= 1;
            }
        }
        most
    }
}

/// An object of the test: its name, and what its reconcile does.
struct Object {
    name: String,
    takes: Duration,
    then: Result<Action, String>,
}

fn object(name: &str, takes: Duration, then: Result<Action, String>) -> Arc<Object> {
    Arc::new(Object {
        name: name.into(),
        takes,
        then,
    })
}

struct Ctx {
    log: Log,
    t0: Instant,
    /// What the error policy was shown.
    errors: Mutex<Vec<String>>,
}

async fn reconcile(object: Arc<Object>, ctx: Arc<Ctx>) -> Result<Action, String> {
    ctx.log.push(ctx.t0, &object.name, "start");
    if object.name == "panics" {
        ctx.log.push(ctx.t0, &object.name, "end");
        panic!("a reconcile that panics");
    }
    sleep(object.takes).await;
    ctx.log.push(ctx.t0, &object.name, "end");
    object.then.clone()
}

fn error_policy(key: &Key, error: &String, ctx: Arc<Ctx>) -> Action {
    ctx.errors
        .lock()
        .unwrap()
        .push(format!("{}: {error}", key.name()));
    Action::requeue(Duration::from_secs(7))
}

fn receiver(rx: mpsc::UnboundedReceiver<Key>) -> impl Stream<Item = Key> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) })
}

fn key(name: &str) -> Key {
    Key::new("ns", name)
}

/// A driver of `objects`, running on what is sent to `triggers` until `stop` is sent.
struct Running {
    ctx: Arc<Ctx>,
    triggers: mpsc::UnboundedSender<Key>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(objects: Vec<Arc<Object>>, synced: Synced, concurrency: usize) -> Running {
    let objects: HashMap<String, Arc<Object>> =
        objects.into_iter().map(|o| (o.name.clone(), o)).collect();
    let ctx = Arc::new(Ctx {
        log: Log::default(),
        t0: Instant::now(),
        errors: Mutex::default(),
    });
    let driver = Driver {
        get: Box::new(move |key: &Key| objects.get(key.name()).cloned()),
        synced,
        concurrency,
        ctx: Arc::clone(&ctx),
    };
    let (triggers, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(driver.run(
        receiver(rx),
        async move {
            let _ = stopped.await;
        },
        reconcile,
        error_policy,
    ));
    Running {
        ctx,
        triggers,
        stop,
        task,
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn nothing_runs_before_the_cache_is_synced_and_an_agent_asked_for_twice_runs_once() {
    let (synced_tx, synced) = cache::unsynced();
    let run = start(
        vec![
            object("a", SECOND, Ok(Action::await_change())),
            object("b", SECOND, Ok(Action::await_change())),
        ],
        synced,
        0,
    );
    for name in ["a", "b", "a", "gone"] {
        run.triggers.send(key(name)).unwrap();
    }
    sleep(10 * SECOND).await;
    assert!(
        run.ctx.log.starts("a").is_empty(),
        "ran before the cache synced"
    );
    synced_tx.send_replace(true);
    sleep(10 * SECOND).await;
    assert_eq!(run.ctx.log.starts("a"), [10 * SECOND]);
    assert_eq!(run.ctx.log.starts("b"), [10 * SECOND]);
    assert_eq!(run.ctx.log.most_at_once(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_agent_asked_for_while_it_is_reconciled_runs_again_after_and_never_twice_at_once() {
    let run = start(
        vec![object("a", 4 * SECOND, Ok(Action::await_change()))],
        cache::synced(),
        4,
    );
    run.triggers.send(key("a")).unwrap();
    sleep(SECOND).await;
    run.triggers.send(key("a")).unwrap();
    run.triggers.send(key("a")).unwrap();
    sleep(20 * SECOND).await;
    assert_eq!(run.ctx.log.starts("a"), [Duration::ZERO, 4 * SECOND]);
    assert_eq!(run.ctx.log.most_at_once(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_most_the_concurrency_runs_at_once() {
    let names = ["a", "b", "c", "d", "e"];
    let run = start(
        names
            .iter()
            .map(|n| object(n, SECOND, Ok(Action::await_change())))
            .collect(),
        cache::synced(),
        2,
    );
    for name in names {
        run.triggers.send(key(name)).unwrap();
    }
    sleep(10 * SECOND).await;
    assert_eq!(run.ctx.log.most_at_once(), 2);
    for name in names {
        assert_eq!(run.ctx.log.starts(name).len(), 1, "{name}");
    }
    let last = names
        .iter()
        .map(|n| run.ctx.log.starts(n)[0])
        .max()
        .unwrap();
    assert_eq!(last, 2 * SECOND, "five one-second reconciles two at a time");
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_is_run_again_when_it_asks_and_a_failure_as_the_error_policy_says() {
    let run = start(
        vec![
            object("requeued", SECOND, Ok(Action::requeue(5 * SECOND))),
            object("failing", SECOND, Err("no policy".into())),
        ],
        cache::synced(),
        0,
    );
    run.triggers.send(key("requeued")).unwrap();
    run.triggers.send(key("failing")).unwrap();
    sleep(14 * SECOND).await;
    // Ends at 1 s, again 5 s later (6 s), and at 12 s.
    assert_eq!(
        run.ctx.log.starts("requeued"),
        [Duration::ZERO, 6 * SECOND, 12 * SECOND]
    );
    // Ends at 1 s, the policy's 7 s later (8 s).
    assert_eq!(run.ctx.log.starts("failing"), [Duration::ZERO, 8 * SECOND]);
    assert_eq!(
        *run.ctx.errors.lock().unwrap(),
        ["failing: no policy", "failing: no policy"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_earlier_request_moves_a_requeue_forward_and_a_later_one_does_not_delay_it() {
    let run = start(
        vec![object("a", SECOND, Ok(Action::requeue(100 * SECOND)))],
        cache::synced(),
        0,
    );
    run.triggers.send(key("a")).unwrap();
    sleep(SECOND / 2).await;
    // Asked for while it runs: due at once when it ends, and its requeue (100 s later) does
    // not put that off.
    run.triggers.send(key("a")).unwrap();
    sleep(10 * SECOND - SECOND / 2).await;
    // Queued for 102 s; asked for now.
    run.triggers.send(key("a")).unwrap();
    sleep(SECOND / 2).await;
    assert_eq!(
        run.ctx.log.starts("a"),
        [Duration::ZERO, SECOND, 10 * SECOND]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_that_panics_is_tried_again_later_and_the_loop_goes_on() {
    let run = start(
        vec![
            object("panics", SECOND, Ok(Action::await_change())),
            object("b", SECOND, Ok(Action::await_change())),
        ],
        cache::synced(),
        0,
    );
    run.triggers.send(key("panics")).unwrap();
    sleep(SECOND).await;
    run.triggers.send(key("b")).unwrap();
    sleep(AFTER_PANIC + SECOND).await;
    assert_eq!(run.ctx.log.starts("panics"), [Duration::ZERO, AFTER_PANIC]);
    assert_eq!(run.ctx.log.starts("b"), [SECOND]);
    assert!(!run.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_starts_nothing_new_and_waits_for_the_reconciles_in_flight() {
    let run = start(
        vec![
            object("long", 30 * SECOND, Ok(Action::await_change())),
            object("next", SECOND, Ok(Action::await_change())),
        ],
        cache::synced(),
        1,
    );
    run.triggers.send(key("long")).unwrap();
    run.triggers.send(key("next")).unwrap();
    sleep(SECOND).await;
    run.stop.send(()).unwrap();
    run.task.await.unwrap();
    assert_eq!(run.ctx.log.of("long", "end"), [30 * SECOND]);
    assert!(run.ctx.log.starts("next").is_empty());
}

#[test]
fn the_queue_takes_the_earliest_due_agent_that_is_not_busy_and_empties() {
    let mut queue = Queue::default();
    let t0 = Instant::now();
    for i in 0..10_000 {
        queue.schedule(
            key(&format!("agent-{i}")),
            t0 + Duration::from_millis(i % 7),
        );
    }
    queue.schedule(key("busy"), t0);
    queue.schedule(key("agent-3"), t0 + 10 * SECOND);
    assert_eq!(queue.len(), 10_001);
    let busy = HashSet::from([key("busy")]);
    assert_eq!(queue.next_due(&busy), Some(t0));
    let mut taken = 0;
    let mut last = t0;
    while let Some(k) = queue.take_due(t0 + SECOND, &busy) {
        let when = t0 + Duration::from_millis(k.name()[6..].parse::<u64>().unwrap() % 7);
        assert!(when >= last, "in time order");
        last = when;
        taken += 1;
    }
    assert_eq!(taken, 10_000);
    assert_eq!(queue.len(), 1, "the busy agent waits");
    assert!(queue.take_due(t0 + SECOND, &HashSet::new()).is_some());
    assert_eq!(queue.len(), 0);
    assert!(queue.by_time.is_empty());
}
