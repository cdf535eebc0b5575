//! Pod-create latencies through the API server by side (reviewed by none, by an allow-all
//! webhook, by agentgov), and what each webhook adds: `admission-load pods`
//! (`e2e/bench/deployed.sh`). A difference of two p99s from a few thousand creates moves by
//! milliseconds from round to round (the tail is the API server's and etcd's, shared by every
//! side), so the pooled difference comes with a bootstrap interval: read a target against its
//! upper end, not against the point.

use std::time::Duration;

/// Resamples of each side for a bootstrap interval.
const RESAMPLES: usize = 1000;

pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The sides of the Pod-create comparison: the namespaces' suffixes and what reviews their Pods.
pub const SIDES: [Side; 3] = [
    Side {
        suffix: "-plain",
        reviewed_by: "none",
    },
    Side {
        suffix: "-allow-all",
        reviewed_by: "an allow-all webhook",
    },
    Side {
        suffix: "",
        reviewed_by: "agentgov",
    },
];
pub const NONE: usize = 0;
pub const ALLOW_ALL: usize = 1;
pub const AGENTGOV: usize = 2;

pub struct Side {
    pub suffix: &'static str,
    pub reviewed_by: &'static str,
}

/// Pod create latencies by (round, side (an index of [`SIDES`]), concurrency), each sorted.
#[derive(Default)]
pub struct Samples(pub Vec<((usize, usize, usize), Vec<Duration>)>);

impl Samples {
    /// Every round's latencies of one side at one concurrency, sorted.
    pub fn pooled(&self, side: usize, concurrency: usize) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .0
            .iter()
            .filter(|((_, s, c), _)| *s == side && *c == concurrency)
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }

    fn round(&self, round: usize, side: usize, concurrency: usize) -> &[Duration] {
        self.0
            .iter()
            .find(|(k, _)| *k == (round, side, concurrency))
            .map(|(_, l)| l.as_slice())
            .unwrap_or_default()
    }

    /// Two Markdown tables: each side pooled over the rounds, then what a registration adds
    /// (agentgov's and the allow-all webhook's over none, agentgov's over the allow-all
    /// webhook's), pooled and round by round to show the spread.
    pub fn report(&self, concurrency: &[usize], rounds: usize) -> String {
        use std::fmt::Write as _;
        let added = |with: &[Duration], without: &[Duration], p: f64| {
            let d = quantile(with, p).as_secs_f64() - quantile(without, p).as_secs_f64();
            format!("{:+.2}", d * 1e3)
        };
        let mut out = String::new();
        out.push_str(
            "| reviewed by | concurrency | creates | p50 ms | p90 ms | p99 ms | mean ms |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|\n");
        for &c in concurrency {
            for (index, side) in SIDES.iter().enumerate() {
                let all = self.pooled(index, c);
                let total: Duration = all.iter().sum();
                let _ = writeln!(
                    out,
                    "| {} | {c} | {} | {} | {} | {} | {} |",
                    side.reviewed_by,
                    all.len(),
                    ms(quantile(&all, 0.5)),
                    ms(quantile(&all, 0.9)),
                    ms(quantile(&all, 0.99)),
                    ms(total / u32::try_from(all.len().max(1)).unwrap_or(u32::MAX)),
                );
            }
        }
        out.push('\n');
        out.push_str(
            "| added by | over | concurrency | added p50 ms | added p90 ms | added p99 ms | added p99 ms, 95 % interval | added p50 ms by round | added p99 ms by round |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for &c in concurrency {
            for (with, without) in [(AGENTGOV, NONE), (ALLOW_ALL, NONE), (AGENTGOV, ALLOW_ALL)] {
                let (all_with, all_without) = (self.pooled(with, c), self.pooled(without, c));
                let by_round = |p: f64| {
                    (0..rounds)
                        .map(|r| added(self.round(r, with, c), self.round(r, without, c), p))
                        .collect::<Vec<_>>()
                        .join(" / ")
                };
                let (low, high) = bootstrap_interval(&all_with, &all_without, 0.99);
                let _ = writeln!(
                    out,
                    "| {} | {} | {c} | {} | {} | {} | {:+.2} to {:+.2} | {} | {} |",
                    SIDES[with].reviewed_by,
                    SIDES[without].reviewed_by,
                    added(&all_with, &all_without, 0.5),
                    added(&all_with, &all_without, 0.9),
                    added(&all_with, &all_without, 0.99),
                    low * 1e3,
                    high * 1e3,
                    by_round(0.5),
                    by_round(0.99),
                );
            }
        }
        out
    }
}

/// A 95 % bootstrap interval, in seconds, of `quantile(with, p) - quantile(without, p)`: each
/// side resampled with replacement [`RESAMPLES`] times, from a fixed seed (the same samples
/// print the same interval).
pub fn bootstrap_interval(with: &[Duration], without: &[Duration], p: f64) -> (f64, f64) {
    if with.is_empty() || without.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = fastrand::Rng::with_seed(0x00a9_e47e);
    let mut scratch = Vec::new();
    let mut differences: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            resampled_quantile(&mut rng, &mut scratch, with, p)
                - resampled_quantile(&mut rng, &mut scratch, without, p)
        })
        .collect();
    differences.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| differences[((differences.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// The `p` quantile of one resample of `sorted` (with replacement), in seconds. The sample is
/// sorted, so a resample's k-th smallest value is the one at its k-th smallest drawn index.
fn resampled_quantile(
    rng: &mut fastrand::Rng,
    scratch: &mut Vec<usize>,
    sorted: &[Duration],
    p: f64,
) -> f64 {
    scratch.clear();
    scratch.extend((0..sorted.len()).map(|_| rng.usize(..sorted.len())));
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    let (_, index, _) = scratch.select_nth_unstable(k);
    sorted[*index].as_secs_f64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_latency_report_pools_rounds_and_shows_each() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let samples = Samples(vec![
            ((0, NONE, 1), ms(&[2, 2, 2])),
            ((0, AGENTGOV, 1), ms(&[3, 3, 3])),
            ((0, ALLOW_ALL, 1), ms(&[2, 3, 3])),
            ((1, AGENTGOV, 1), ms(&[4, 4, 4])),
            ((1, ALLOW_ALL, 1), ms(&[3, 3, 3])),
            ((1, NONE, 1), ms(&[2, 2, 2])),
        ]);
        assert_eq!(samples.pooled(AGENTGOV, 1), ms(&[3, 3, 3, 4, 4, 4]));
        let report = samples.report(&[1], 2);
        assert!(report.contains("| none | 1 | 6 | 2.00 |"), "{report}");
        assert!(report.contains("| agentgov | 1 | 6 | 4.00 |"), "{report}");
        assert!(
            report.contains(
                "| agentgov | none | 1 | +2.00 | +2.00 | +2.00 | +2.00 to +2.00 | +1.00 / +2.00 | +1.00 / +2.00 |"
            ),
            "{report}"
        );
        assert!(
            report.contains("| an allow-all webhook | none | 1 | +1.00 | +1.00 | +1.00 | +1.00 to +1.00 | +1.00 / +1.00 | +1.00 / +1.00 |"),
            "{report}"
        );
        assert!(
            report.contains("| agentgov | an allow-all webhook | 1 | +1.00 | +1.00 | +1.00 | +1.00 to +1.00 | +0.00 / +1.00 | +0.00 / +1.00 |"),
            "{report}"
        );
    }

    fn spread(from_ms: f64, step_ms: f64, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|i| Duration::from_secs_f64((from_ms + step_ms * i as f64) / 1e3))
            .collect()
    }

    #[test]
    fn the_bootstrap_interval_holds_the_difference_and_narrows_with_more_creates() {
        // The same spread, 1 ms slower: every resample's p99 differs by about 1 ms.
        let (low, high) =
            bootstrap_interval(&spread(3.0, 0.01, 4000), &spread(2.0, 0.01, 4000), 0.99);
        assert!(low <= 0.001 + 1e-9 && 0.001 - 1e-9 <= high, "{low} {high}");
        assert!(high - low < 0.002, "{low} {high}");
        // A heavy tail, few creates: the interval is wide; many creates: narrower.
        let tailed = |n: usize| {
            let mut v = spread(2.0, 0.001, n);
            for (i, d) in v.iter_mut().enumerate() {
                if i % 50 == 0 {
                    *d += Duration::from_millis(10 + (i % 7) as u64 * 3);
                }
            }
            v.sort_unstable();
            v
        };
        let few = bootstrap_interval(&tailed(300), &tailed(301), 0.99);
        let many = bootstrap_interval(&tailed(12000), &tailed(12001), 0.99);
        assert!(few.1 - few.0 > many.1 - many.0, "{few:?} {many:?}");
        assert!(few.0 <= 0.0 && 0.0 <= few.1, "{few:?}");
        assert_eq!(
            bootstrap_interval(&tailed(300), &tailed(301), 0.99),
            few,
            "seeded: the same samples, the same interval"
        );
        assert_eq!(bootstrap_interval(&[], &tailed(10), 0.99), (0.0, 0.0));
    }
}
