//! Ids and time for one host: the ids that order events and calls, and the wall-clock stamps
//! of events, each read with as few shared writes and system calls as the hot paths allow.

use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_utils::CachePadded;

/// How often [`Clock::wall_ms`] reads the wall clock again, so that a clock step shows in
/// event timestamps within this time.
const WALL_REFRESH_US: u64 = 100_000;

/// Distinguishes clocks (hosts) in one process, for the per-thread id blocks.
static CLOCKS: AtomicU64 = AtomicU64::new(1);

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One host's ids and wall clock.
pub(crate) struct Clock {
    epoch: Instant,
    ids: CachePadded<AtomicU64>,
    instance: u64,
    /// Wall-clock ms minus monotonic ms since `epoch`, as of the last wall-clock reading.
    wall_offset_ms: CachePadded<AtomicI64>,
    /// When (µs since `epoch`) the wall clock was last read.
    wall_read_us: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            epoch: Instant::now(),
            ids: CachePadded::new(AtomicU64::new(1)),
            instance: CLOCKS.fetch_add(1, Ordering::Relaxed),
            wall_offset_ms: CachePadded::new(AtomicI64::new(unix_ms())),
            wall_read_us: AtomicU64::new(0),
        }
    }
}

impl Clock {
    /// When the host started: the zero of [`Clock::micros`] (and of the flight recorder's
    /// times, which share it).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Microseconds from the host's start to `at` (a clock reading already taken).
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The wall-clock time of `mono_us` (a monotonic reading the caller took, as
    /// [`Clock::micros`]), in ms since the Unix epoch: the monotonic time plus the offset found
    /// at the last wall-clock reading, which is refreshed at most every 100 ms. Publishing an
    /// event thus reads the clock once, for its timestamp and its record alike.
    pub fn wall_ms(&self, mono_us: u64) -> u64 {
        let mono_ms = i64::try_from(mono_us / 1000).unwrap_or(i64::MAX);
        if mono_us.saturating_sub(self.wall_read_us.load(Ordering::Relaxed)) > WALL_REFRESH_US {
            // Racing refreshers each store a valid offset.
            self.wall_offset_ms
                .store(unix_ms().saturating_sub(mono_ms), Ordering::Relaxed);
            self.wall_read_us.store(mono_us, Ordering::Relaxed);
        }
        let wall = mono_ms.saturating_add(self.wall_offset_ms.load(Ordering::Relaxed));
        u64::try_from(wall).unwrap_or(0)
    }

    /// A fresh id for events, calls and deliveries (unique within the host, increasing: events
    /// and calls are ordered by it).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh unique id that need not be ordered with others (delivery records): taken from a
    /// block reserved by this thread, so busy dispatcher threads do not contend on the counter.
    pub fn local_id(&self) -> u64 {
        const BLOCK: u64 = 1024;
        thread_local! {
            // (clock, next, end): a block belongs to one host's counter.
            static BLOCK_IDS: std::cell::Cell<(u64, u64, u64)> =
                const { std::cell::Cell::new((0, 0, 0)) };
        }
        let me = self.instance;
        BLOCK_IDS.with(|ids| {
            let (owner, next, end) = ids.get();
            let (next, end) = if owner == me && next < end {
                (next, end)
            } else {
                let start = self.ids.fetch_add(BLOCK, Ordering::Relaxed);
                (start, start + BLOCK)
            };
            ids.set((me, next + 1, end));
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn ids_are_unique_across_threads_and_blocks() {
        let clock = std::sync::Arc::new(Clock::default());
        let mut all: Vec<u64> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    (0..3000)
                        .map(|i| {
                            if i % 2 == 0 {
                                clock.local_id()
                            } else {
                                clock.next_id()
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn wall_stamps_follow_the_wall_clock() {
        let clock = Clock::default();
        let before = u64::try_from(unix_ms()).expect("after 1970");
        let stamp = clock.wall_ms(clock.micros(Instant::now() + Duration::from_millis(5)));
        let after = u64::try_from(unix_ms()).expect("after 1970");
        assert!(
            stamp + 50 >= before && stamp <= after + 50,
            "{before} <= {stamp} <= {after}"
        );
    }
}
