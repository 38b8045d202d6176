//! Timing and process readings: medians of alternating blocks, CPU time, resident memory.
//!
//! The process readings parse `/proc` (Linux); elsewhere they return `None` and the cases
//! report `n/a`. No `unsafe`: no `getrusage` through libc.

use std::{path::Path, time::Duration};

use super::BenchError;

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The `q` quantile (nearest rank) of `values`.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64) * q).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

/// Runs `rounds` blocks of each side, alternating which goes first so that drift of the machine
/// (frequency, other load) hits both alike. Each closure runs one block and returns its cost
/// per operation, in whatever unit the caller chose. Returns the medians (ours, baseline) and
/// every sample.
pub(crate) fn alternate(
    rounds: usize,
    mut ours: impl FnMut() -> Result<f64, BenchError>,
    mut baseline: impl FnMut() -> Result<f64, BenchError>,
) -> Result<Paired, BenchError> {
    // One untimed block of each first: thread start-up, page faults, lazy symbol binding.
    ours()?;
    baseline()?;
    let mut paired = Paired::default();
    for round in 0..rounds.max(1) {
        if round % 2 == 0 {
            paired.ours.push(ours()?);
            paired.baseline.push(baseline()?);
        } else {
            paired.baseline.push(baseline()?);
            paired.ours.push(ours()?);
        }
    }
    Ok(paired)
}

/// Samples of both sides of a comparison.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paired {
    pub ours: Vec<f64>,
    pub baseline: Vec<f64>,
}

impl Paired {
    pub fn medians(&self) -> (f64, f64) {
        (
            median(&mut self.ours.clone()),
            median(&mut self.baseline.clone()),
        )
    }

    /// Spread of each side: (min, max) of the samples.
    pub fn spread(&self) -> ((f64, f64), (f64, f64)) {
        let range = |v: &[f64]| {
            v.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                })
        };
        (range(&self.ours), range(&self.baseline))
    }
}

/// Microseconds in `d`.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// CPU time used by the whole process so far (every thread, living or exited), from
/// `/proc/self/stat` (`utime + stime`, in clock ticks of 1/100 s: Linux's `USER_HZ`, fixed for
/// `/proc` on every architecture). `None` off Linux.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time of the living threads, in nanoseconds, from `/proc/self/task/*/schedstat`: finer
/// than [`process_cpu_time`]'s 10 ms ticks, blind to threads that exited. `None` where the
/// kernel does not provide it.
pub(crate) fn threads_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        // A thread may exit between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Resident memory of process `pid` in KiB; `None` off Linux or when it is gone.
pub(crate) fn process_resident_kib(pid: u32) -> Option<u64> {
    status_kib_of(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    status_kib_of("/proc/self/status", field)
}

fn status_kib_of(file: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(file).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.get(field.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of the process in KiB (`VmRSS`); `None` off Linux.
pub fn resident_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Virtual memory of the process in KiB (`VmSize`); `None` off Linux.
pub(crate) fn virtual_kib() -> Option<u64> {
    status_kib("VmSize:")
}

/// Memory mappings of the process (lines of `/proc/self/maps`). Every plugin image adds a few
/// and none is ever unmapped; Linux refuses new ones past `vm.max_map_count` (65530 by default).
pub fn mapped_regions() -> Option<usize> {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .map(|m| m.lines().count())
}

/// The CPU model from `/proc/cpuinfo`; `None` off Linux.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string(Path::new("/proc/cpuinfo")).ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.9), 9.0);
        assert_eq!(quantile(&mut v, 1.0), 10.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
    }

    #[test]
    fn alternate_runs_both_sides_every_round() {
        let (mut a, mut b) = (0, 0);
        let paired = alternate(
            4,
            || {
                a += 1;
                Ok(2.0)
            },
            || {
                b += 1;
                Ok(1.0)
            },
        )
        .expect("no error");
        assert_eq!((a, b), (5, 5));
        assert_eq!(paired.medians(), (2.0, 1.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_readings_parse_on_linux() {
        assert!(process_cpu_time().is_some());
        assert!(resident_kib().is_some_and(|k| k > 0));
        assert!(virtual_kib().is_some_and(|k| k > 0));
        assert!(mapped_regions().is_some_and(|n| n > 0));
        assert!(threads_cpu_time().is_some());
    }
}
