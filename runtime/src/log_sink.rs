//! The way out for log lines: stdout, written by a thread of its own, as lines come while they
//! are rare and in batches while they are not ([`Batched`]). A busy webhook writes a decision
//! line a review; one `write` to a pipe a line (and a wake of the reader) cost more CPU than the
//! review itself (`make bench`, "the webhook as deployed"), and a review must not wait on
//! whatever drains its stdout.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Log lines to a sink (stdout), written by a thread of this writer's own: as they come while
/// lines are rare, in batches while they are not. A line that finds the sink quiet for
/// [`Batched::INTERVAL`] is written at once; lines that follow within it are written together
/// [`Batched::INTERVAL`] after the previous write: one write a batch instead of one a line. A
/// decision line into a pipe took a `write` and woke the reader each time, which cost a busy
/// webhook more CPU than the review itself.
///
/// The thread that logs only appends the line and, for a batch's first, wakes the writer: it
/// never waits on the sink. A reader of stdout that stalls (a container runtime's log copier
/// held up by its disk) holds up the writer thread, not the reviews, until
/// [`Batched::MAX_PENDING_BYTES`] wait. Nothing is dropped: past them, a thread that logs waits
/// for the batch to be written (as a write to a full pipe blocks). [`Batched::flush`] (also
/// `io::Write::flush`) writes what is waiting; the binary calls it before it exits. A write
/// error loses the lines it carried, as a failed write to stdout does.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Batched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched").finish_non_exhaustive()
    }
}

struct Shared {
    sink: Mutex<Box<dyn Write + Send>>,
    /// The writer thread's side; none for a [`Batched::direct`] sink, where each line is
    /// written by the thread that logs it.
    batching: Option<Batching>,
}

/// What the lines' writer thread shares with the threads that log.
struct Batching {
    state: Mutex<State>,
    /// The batch writer waits here for a batch to start (and for `flush`).
    pending: Condvar,
    /// Writers waiting for room and `flush` wait here for a batch to be written.
    written: Condvar,
    interval: Duration,
    max_pending_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Lines waiting for the batch writer.
    pending: Vec<u8>,
    /// The previous batch's buffer, kept for the next.
    spare: Vec<u8>,
    /// A batch taken from `pending` is being written.
    writing: bool,
    /// When the sink was last written.
    last_write: Option<Instant>,
    /// `flush` asks for the batch now.
    urgent: bool,
    /// Threads waiting on `written`.
    waiting: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves whole lines: go on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batched {
    /// How long lines may wait to be written together.
    pub const INTERVAL: Duration = Duration::from_millis(2);
    /// Bytes waiting beyond which writers wait for the batch writer.
    pub const MAX_PENDING_BYTES: usize = 1 << 20;

    /// Batched lines to stdout.
    pub fn stdout() -> io::Result<Self> {
        Batched::new(
            Box::new(io::stdout()),
            Batched::INTERVAL,
            Batched::MAX_PENDING_BYTES,
        )
    }

    /// Lines written to `sink` as they come, one write each (no thread): what [`Batched::new`]
    /// falls back to when it cannot start its thread.
    pub fn direct(sink: Box<dyn Write + Send>) -> Self {
        Batched {
            shared: Arc::new(Shared {
                sink: Mutex::new(sink),
                batching: None,
            }),
        }
    }

    /// Batched lines to `sink`; starts the batch writer's thread.
    pub fn new(
        sink: Box<dyn Write + Send>,
        interval: Duration,
        max_pending_bytes: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            sink: Mutex::new(sink),
            batching: Some(Batching {
                state: Mutex::new(State::default()),
                pending: Condvar::new(),
                written: Condvar::new(),
                interval,
                max_pending_bytes,
            }),
        });
        let batches = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Some(batching) = &batches.batching {
                    batching.write_batches(&batches.sink);
                }
            })?;
        Ok(Batched { shared })
    }

    /// Write what is waiting, waiting at most `timeout` for it.
    pub fn flush_within(&self, timeout: Duration) {
        let Some(batching) = &self.shared.batching else {
            // Each line was written and flushed as it came.
            return;
        };
        let deadline = Instant::now() + timeout;
        let mut state = lock(&batching.state);
        while !state.pending.is_empty() || state.writing {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state.urgent = true;
            batching.pending.notify_one();
            state.waiting += 1;
            state = batching
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    /// Write what is waiting (at most 5 s).
    pub fn flush(&self) {
        self.flush_within(Duration::from_secs(5));
    }
}

impl Batching {
    /// The batch writer: waits for a batch to start, lets it fill until `interval` after the
    /// previous write, writes it to `sink`.
    fn write_batches(&self, sink: &Mutex<Box<dyn Write + Send>>) {
        let mut state = lock(&self.state);
        loop {
            while state.pending.is_empty() {
                state = self
                    .pending
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let due = state
                .last_write
                .map_or_else(Instant::now, |at| at + self.interval);
            while !state.urgent && state.pending.len() < self.max_pending_bytes / 2 {
                let Some(left) = due.checked_duration_since(Instant::now()) else {
                    break;
                };
                state = self
                    .pending
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.urgent = false;
            let spare = std::mem::take(&mut state.spare);
            let mut batch = std::mem::replace(&mut state.pending, spare);
            state.writing = true;
            drop(state);
            {
                let mut sink = lock(sink);
                let _ = sink.write_all(&batch).and_then(|()| sink.flush());
            }
            batch.clear();
            state = lock(&self.state);
            state.spare = batch;
            state.writing = false;
            state.last_write = Some(Instant::now());
            if state.waiting > 0 {
                self.written.notify_all();
            }
        }
    }
}

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let Some(batching) = &self.shared.batching else {
            let mut sink = lock(&self.shared.sink);
            sink.write_all(line)?;
            sink.flush()?;
            return Ok(line.len());
        };
        let mut state = lock(&batching.state);
        while !state.pending.is_empty()
            && state.pending.len() + line.len() > batching.max_pending_bytes
        {
            state.waiting += 1;
            state = batching
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
        let first = state.pending.is_empty();
        let half = batching.max_pending_bytes / 2;
        let was_below_half = state.pending.len() < half;
        state.pending.extend_from_slice(line);
        // The batch writer waits for a batch's first line, and is told when it is half full.
        if (first && !state.writing) || (was_below_half && state.pending.len() >= half) {
            batching.pending.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Batched::flush(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A sink that records each write separately.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// Wait until `sink` holds `text`, at most `within`.
    fn written(sink: &Writes, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while sink.text() != text {
            assert!(Instant::now() < deadline, "{:?}", sink.text());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_lone_line_is_written_at_once() {
        let sink = Writes::default();
        // An interval far longer than the test may wait: a lone line does not wait for it.
        let mut log =
            Batched::new(Box::new(sink.clone()), Duration::from_secs(30), 1 << 16).unwrap();
        log.write_all(b"one\n").unwrap();
        written(&sink, "one\n", Duration::from_secs(5));
        assert_eq!(sink.count(), 1);
    }

    /// A sink whose writes wait until the test lets them through.
    struct Gate(Arc<(Mutex<bool>, Condvar)>, Writes);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, opened) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_holds_up_the_writer_thread_not_the_lines_logged() {
        let sink = Writes::default();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let mut log = Batched::new(
            Box::new(Gate(Arc::clone(&gate), sink.clone())),
            Duration::from_millis(1),
            1 << 16,
        )
        .unwrap();
        // The reader of stdout stalls: the writer thread is stuck writing the first line.
        let (done, logged) = std::sync::mpsc::channel();
        let logging = std::thread::spawn(move || {
            for i in 0..100 {
                log.write_all(format!("{i}\n").as_bytes()).unwrap();
            }
            done.send(()).unwrap();
            log
        });
        logged
            .recv_timeout(Duration::from_secs(5))
            .expect("logging waited on the stalled sink");
        assert_eq!(sink.count(), 0);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let log = logging.join().unwrap();
        log.flush();
        let expected: String = (0..100).map(|i| format!("{i}\n")).collect();
        assert_eq!(sink.text(), expected);
    }

    #[test]
    fn a_direct_sink_writes_each_line_at_once() {
        let sink = Writes::default();
        let mut log = Batched::direct(Box::new(sink.clone()));
        for line in [&b"one\n"[..], b"two\n", b"three\n"] {
            log.write_all(line).unwrap();
        }
        assert_eq!(sink.text(), "one\ntwo\nthree\n");
        assert_eq!(sink.count(), 3);
        log.flush();
    }

    #[test]
    fn lines_in_a_burst_are_written_together_in_order() {
        let sink = Writes::default();
        let log = Batched::new(Box::new(sink.clone()), Duration::from_millis(20), 1 << 16).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        log.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        log.flush();
        let text = sink.text();
        assert_eq!(text.lines().count(), 1000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..250).collect::<Vec<_>>(), "thread {t}");
        }
        assert!(sink.count() < 100, "{} writes for 1000 lines", sink.count());
    }

    #[test]
    fn waiting_lines_are_written_after_the_interval_without_flush() {
        let sink = Writes::default();
        let mut log =
            Batched::new(Box::new(sink.clone()), Duration::from_millis(200), 1 << 16).unwrap();
        log.write_all(b"a\n").unwrap();
        log.write_all(b"b\n").unwrap();
        log.write_all(b"c\n").unwrap();
        written(&sink, "a\nb\nc\n", Duration::from_secs(5));
        assert!(sink.count() <= 3, "{} writes", sink.count());
    }

    #[test]
    fn a_full_batch_holds_writers_back_and_loses_nothing() {
        let sink = Writes::default();
        let mut log = Batched::new(Box::new(sink.clone()), Duration::from_millis(50), 64).unwrap();
        let line = [b'x'; 15];
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let mut l = line.to_vec();
            l[0] = i;
            l.push(b'\n');
            log.write_all(&l).unwrap();
            expected.extend_from_slice(&l);
        }
        log.flush();
        assert_eq!(sink.0.lock().unwrap().concat(), expected);
    }
}
