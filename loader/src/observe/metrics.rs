//! Per-plugin counters and latency histograms, updated with relaxed atomics on the dispatch path.
//!
//! The counters of handled work (and the histogram) are written only by the plugin's own
//! dispatcher thread, so they are bumped with a plain load and store instead of a locked
//! read-modify-write: readers still see whole values, and the dispatch path pays no atomic
//! instruction per delivery. (A thread replaced after a missed deadline may finish its stuck call
//! while its successor serves; one count can then be lost, never corrupted.) Counters that other
//! threads write (timeouts, drops, refusals) use `fetch_add`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use plugin_api::ErrorKind;
use serde::Serialize;

/// Adds one to a counter that only the calling thread writes (see the module docs).
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Buckets of a latency histogram: bucket `i` counts calls that took less than `2^i` µs.
const BUCKETS: usize = 32;

/// Live counters of one plugin.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub events_handled: AtomicU64,
    pub events_dropped: AtomicU64,
    pub calls_served: AtomicU64,
    pub errors: AtomicU64,
    pub panics: AtomicU64,
    pub timeouts: AtomicU64,
    pub late_replies: AtomicU64,
    pub cancelled_replies: AtomicU64,
    pub queue_full: AtomicU64,
    latency: Histogram,
}

#[derive(Debug)]
struct Histogram([AtomicU64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = (64 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        bump(&self.0[bucket]);
    }

    /// Upper bound (µs) of the bucket holding quantile `q`, or 0 without samples.
    fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }
}

impl Metrics {
    pub fn record_call(&self, elapsed: Duration, failed: Option<ErrorKind>) {
        bump(&self.calls_served);
        self.count_failure(failed);
        self.latency.record(elapsed);
    }

    pub fn record_event(&self, elapsed: Duration, failed: Option<ErrorKind>) {
        bump(&self.events_handled);
        self.count_failure(failed);
        self.latency.record(elapsed);
    }

    fn count_failure(&self, failed: Option<ErrorKind>) {
        match failed {
            None => {}
            Some(ErrorKind::Panicked) => {
                bump(&self.errors);
                bump(&self.panics);
            }
            Some(_) => {
                bump(&self.errors);
            }
        }
    }

    pub fn snapshot(&self, queue_depth: (usize, usize)) -> PluginMetrics {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PluginMetrics {
            events_handled: get(&self.events_handled),
            events_dropped: get(&self.events_dropped),
            calls_served: get(&self.calls_served),
            errors: get(&self.errors),
            panics: get(&self.panics),
            timeouts: get(&self.timeouts),
            late_replies: get(&self.late_replies),
            cancelled_replies: get(&self.cancelled_replies),
            queue_full: get(&self.queue_full),
            queued_requests: queue_depth.0,
            queued_events: queue_depth.1,
            latency_p50_us: self.latency.quantile(0.5),
            latency_p99_us: self.latency.quantile(0.99),
        }
    }
}

/// A point-in-time copy of one plugin's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginMetrics {
    /// Events whose handler ran.
    pub events_handled: u64,
    /// Events dropped because the plugin's queue was full.
    pub events_dropped: u64,
    /// Commands, messages, RPC, hook, middleware and provider calls served.
    pub calls_served: u64,
    /// Handler calls that returned an error (including panics).
    pub errors: u64,
    /// Handler calls that panicked.
    pub panics: u64,
    /// Calls to this plugin whose caller gave up waiting.
    pub timeouts: u64,
    /// Replies that arrived after their caller gave up (dropped), although the call was not
    /// cancelled (rare since 1.1: a caller that gives up cancels the call).
    pub late_replies: u64,
    /// Replies of handlers that returned after their call was cancelled (dropped, and not
    /// counted as late: the handler was told to stop).
    pub cancelled_replies: u64,
    /// Calls refused because the request queue was full.
    pub queue_full: u64,
    /// Requests waiting now.
    pub queued_requests: usize,
    /// Events waiting now.
    pub queued_events: usize,
    /// Median handler latency, as the upper bound of its power-of-two bucket, in µs (0 before
    /// the first sample; `null` in JSON).
    #[serde(serialize_with = "super::json::zero_as_null")]
    pub latency_p50_us: u64,
    /// 99th-percentile handler latency, bucket upper bound, in µs (0 before the first sample;
    /// `null` in JSON).
    #[serde(serialize_with = "super::json::zero_as_null")]
    pub latency_p99_us: u64,
}
