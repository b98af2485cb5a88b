//! How long to measure, and how to boil samples down to one figure.
//!
//! Every part of the bench takes its repetition counts and time windows from
//! one [`Budget`], so `--quick` shortens everything in one place, and every
//! figure is reduced the same way: percentiles within a repetition, the
//! median across repetitions.

use std::time::Duration;

/// Repetitions, windows and sample counts for one run.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Whether this is the `--quick` smoke run.
    pub quick: bool,
    /// Repetitions of each measurement; the figure is their median.
    pub reps: usize,
    /// Length of one throughput repetition.
    pub window: Duration,
    /// Warm-up before throughput repetitions.
    pub warmup: Duration,
    /// Round trips per latency repetition.
    pub latency_samples: usize,
    /// Round trips discarded before latency repetitions.
    pub latency_warmup: usize,
    /// Repetitions of spawn and cold-start measurements.
    pub spawn_reps: usize,
}

impl Budget {
    /// The full run (about a minute and a half on 2 cores) or the quick one.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                reps: 3,
                window: Duration::from_millis(250),
                warmup: Duration::from_millis(100),
                latency_samples: 3_000,
                latency_warmup: 300,
                spawn_reps: 5,
            }
        } else {
            Self {
                quick,
                reps: 5,
                window: Duration::from_secs(1),
                warmup: Duration::from_millis(300),
                latency_samples: 20_000,
                latency_warmup: 2_000,
                spawn_reps: 15,
            }
        }
    }

    /// The flag that passes this budget on to a child process.
    pub fn flag(&self) -> Option<&'static str> {
        self.quick.then_some("--quick")
    }
}

/// The `p`-th percentile (0..=100) of `samples`, nearest-rank; sorts them.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// p50 and p99 of one repetition's round trips, in µs.
pub fn latency_percentiles(samples_us: &mut [f64]) -> (f64, f64) {
    (percentile(samples_us, 50.0), percentile(samples_us, 99.0))
}

/// Median p50 and median p99 over repetitions.
pub fn median_latency(reps: &[(f64, f64)]) -> (f64, f64) {
    (
        median(reps.iter().map(|r| r.0).collect()),
        median(reps.iter().map(|r| r.1).collect()),
    )
}

/// Resident set size of this process in MiB (`VmRSS` in
/// `/proc/self/status`), or NaN if it cannot be read.
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut samples, 50.0), 50.0);
        assert_eq!(percentile(&mut samples, 99.0), 99.0);
        assert_eq!(percentile(&mut samples, 100.0), 100.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(rss_mib() > 0.0);
    }
}
