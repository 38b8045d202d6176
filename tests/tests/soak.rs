//! Soak: many threads emit events and call commands while a plugin is hot-reloaded back and
//! forth between two builds and a faulty plugin keeps panicking until it is quarantined. At
//! the end nothing addressed to a healthy plugin was lost, failed or doubled, the counters
//! agree with what the test did, and memory grew by no more than the retired images.
//!
//! `soak_short` runs in the normal suite (a few seconds). The long run is ignored by default:
//!
//! ```sh
//! SOAK_SECS=600 cargo test -p tests --test soak -- --ignored
//! ```

use std::{
    fs,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use counter::{Count, Increment};
use loader::{FileChange, Host, PluginState};
use plugin_api::{ErrorKind, Payload};
use serde::Deserialize;
use tests::{example_lib, fixture, info, json, metrics, replace_with_bytes, wait_until, PluginDir};

/// Threads publishing `soak:tick` events, one stream each.
const EMITTERS: u32 = 2;
/// Threads calling `counter:increment`.
const CALLERS: usize = 2;
/// Bound of every plugin's event queue. Emitters slow down when tally's backlog passes half
/// of it, so a healthy subscriber never loses an event to the bound.
const EVENT_QUEUE: usize = 16 * 1024;
/// Shortest pause between two reloads of counter.
const RELOAD_EVERY: Duration = Duration::from_millis(150);
/// Most reloads in one run: every reload maps a new image that is never unmapped (by design),
/// so an unbounded number would be an unbounded, expected, growth.
const MAX_RELOADS: u64 = 120;
/// Growth of the resident set allowed on top of the retired images.
const RSS_SLACK_BYTES: u64 = 96 * 1024 * 1024;

/// The soaks share the process-wide image count: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The short soak of the normal test suite.
#[test]
fn soak_short() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    soak(Duration::from_secs(4));
}

/// The long soak, for `SOAK_SECS` seconds (default 60):
/// `SOAK_SECS=600 cargo test -p tests --test soak -- --ignored`.
#[test]
#[ignore = "long; run with SOAK_SECS=600 cargo test -p tests --test soak -- --ignored"]
fn soak_long() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|e| panic!("SOAK_SECS={s:?}: {e}"))
        })
        .unwrap_or(60);
    soak(Duration::from_secs(secs));
}

/// tally's own count of the `soak:*` events it handled.
#[derive(Debug, Deserialize)]
struct TallyCount {
    handled: u64,
    gaps: u64,
    streams: usize,
}

/// What the faulty-plugin thread saw.
#[derive(Debug, Default)]
struct FaultyRun {
    panics: u64,
    quarantines: u64,
    unexpected: Vec<String>,
}

/// Resident memory of this process, in bytes (Linux), or `None`.
fn resident_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn tally(host: &Host) -> TallyCount {
    host.execute("tally:count", json("null"))
        .expect("tally answers")
        .decode()
        .expect("tally's count")
}

fn counter_get(host: &Host) -> Count {
    host.execute("counter:get", Payload::empty())
        .expect("counter answers")
        .decode()
        .expect("a count")
}

/// One increment, in one of the three argument forms counter accepts.
fn increment_args(i: u64) -> Payload {
    match i % 3 {
        0 => Payload::empty(),
        1 => json(r#"{"by":1}"#),
        _ => Payload::encode(&Increment { by: 1 }).expect("bincode"),
    }
}

/// Emits stream `stream` until `stop`; returns how many events it emitted.
fn emit_stream(host: &Host, stream: u32, stop: &AtomicBool) -> u64 {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if n.is_multiple_of(256) {
            // Back-pressure of the test's own: keep tally's backlog below half its bound.
            while metrics(host, "tally").queued_events > EVENT_QUEUE / 2 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let data = Payload::encode(&(stream, n)).expect("bincode");
        host.emit("soak:tick", data).expect("emit never fails");
        n += 1;
    }
    n
}

/// Increments counter until `stop`; returns the successes and every failure.
fn call_counter(host: &Host, stop: &AtomicBool) -> (u64, Vec<String>) {
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let args = increment_args(i);
        i += 1;
        let result = host
            .execute("counter:increment", args)
            .and_then(|reply| reply.decode::<Count>());
        match result {
            Ok(_) => ok += 1,
            Err(e) => failures.push(e.to_string()),
        }
    }
    (ok, failures)
}

/// Swaps counter's file between the two builds until `stop`; returns the reloads done and
/// every failure.
fn reload_counter(
    host: &Host,
    file: &Path,
    builds: [&[u8]; 2],
    stop: &AtomicBool,
) -> (u64, Vec<String>) {
    let mut reloads = 0;
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) && reloads < MAX_RELOADS {
        thread::sleep(RELOAD_EVERY);
        // The file holds builds[reloads % 2]; put the other one in, atomically.
        let next = builds[usize::from(reloads.is_multiple_of(2))];
        replace_with_bytes(next, file);
        match host.apply_file(file) {
            Ok(FileChange::Reloaded { .. }) => reloads += 1,
            Ok(other) => failures.push(format!("reload {reloads}: {other:?}")),
            Err(e) => failures.push(format!("reload {reloads}: {e}")),
        }
    }
    (reloads, failures)
}

/// Makes faulty panic until it is quarantined, re-enables it, and again, until `stop`; then
/// leaves it quarantined.
fn torment_faulty(host: &Host, stop: &AtomicBool) -> FaultyRun {
    let mut run = FaultyRun::default();
    loop {
        match host.execute("faulty:panic", json("null")) {
            Err(e) if e.kind == ErrorKind::Panicked => run.panics += 1,
            // Queued behind the panic that got it quarantined, or sent after it.
            Err(e) if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::NotFound) => {}
            Err(e) => run.unexpected.push(e.to_string()),
            Ok(reply) => run.unexpected.push(format!("faulty answered {reply:?}")),
        }
        if info(host, "faulty").state == PluginState::Quarantined {
            run.quarantines += 1;
            if stop.load(Ordering::Relaxed) {
                return run;
            }
            thread::sleep(Duration::from_millis(100));
            if let Err(e) = host.reenable("faulty") {
                run.unexpected.push(format!("reenable: {e}"));
                return run;
            }
        }
    }
}

fn soak(duration: Duration) {
    let dir = PluginDir::new();
    let counter_file = dir.add_example("counter");
    dir.add_fixture("tally");
    dir.add_fixture("faulty");
    // Read once: the files in the target folder may be rebuilt while the soak runs.
    let builds = [example_lib("counter"), fixture("counter-v2")]
        .map(|path| fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let host = dir.load_ok_with(|c| {
        c.event_queue = EVENT_QUEUE;
        c.request_queue = 1024;
    });
    let quarantined = host.subscribe("plugin:quarantined", 1 << 16);

    // Warm up (threads, allocator pools, the first reload) before the memory baseline.
    for i in 0..100 {
        host.execute("counter:increment", increment_args(i))
            .expect("increment");
        host.emit(
            "soak:tick",
            Payload::encode(&(u32::MAX, i)).expect("bincode"),
        )
        .expect("emit");
    }
    let warm_increments = 100;
    let warm_events = 100;
    let rss_before = resident_bytes();
    let (_, retired_before) = host.mapped_images();

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (emitted, increments, call_failures, (reloads, reload_failures), faulty) =
        thread::scope(|s| {
            let emitters: Vec<_> = (0..EMITTERS)
                .map(|stream| {
                    let (host, stop) = (&host, &stop);
                    s.spawn(move || emit_stream(host, stream, stop))
                })
                .collect();
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| s.spawn(|| call_counter(&host, &stop)))
                .collect();
            let reloader = s.spawn(|| {
                reload_counter(
                    &host,
                    &counter_file,
                    [builds[0].as_slice(), builds[1].as_slice()],
                    &stop,
                )
            });
            let faulty = s.spawn(|| torment_faulty(&host, &stop));
            while started.elapsed() < duration {
                thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::Relaxed);
            let emitted: u64 = emitters
                .into_iter()
                .map(|t| t.join().expect("an emitter"))
                .sum();
            let mut increments = 0;
            let mut failures = Vec::new();
            for t in callers {
                let (ok, failed) = t.join().expect("a caller");
                increments += ok;
                failures.extend(failed);
            }
            (
                emitted,
                increments,
                failures,
                reloader.join().expect("the reloader"),
                faulty.join().expect("the faulty thread"),
            )
        });

    // Calls: every one succeeded, and the total and the session tally (handed over from
    // instance to instance at each reload) agree with them.
    assert!(call_failures.is_empty(), "failed calls: {call_failures:?}");
    assert!(
        reload_failures.is_empty(),
        "failed reloads: {reload_failures:?}"
    );
    assert!(reloads >= 2, "only {reloads} reloads");
    let expected_version = if reloads.is_multiple_of(2) {
        "0.1.0"
    } else {
        "0.2.0"
    };
    assert_eq!(
        info(&host, "counter").version.as_deref(),
        Some(expected_version)
    );
    let served = metrics(&host, "counter");
    let count = counter_get(&host);
    let total = warm_increments + increments;
    assert_eq!(count.value, total, "stored total");
    assert_eq!(
        count.session, total,
        "session tally across {reloads} reloads"
    );
    assert_eq!(served.calls_served, total, "{served:?}");
    assert_eq!(
        (
            served.errors,
            served.panics,
            served.timeouts,
            served.queue_full
        ),
        (0, 0, 0, 0),
        "{served:?}"
    );

    // Events: every one handled exactly once, in order per stream, none dropped.
    let total_events = warm_events + emitted;
    wait_until("tally handled every event", || {
        tally(&host).handled == total_events
    });
    let counted = tally(&host);
    assert_eq!(counted.gaps, 0, "{counted:?}");
    assert_eq!(counted.streams, EMITTERS as usize + 1, "{counted:?}");
    let m = metrics(&host, "tally");
    assert_eq!(m.events_handled, total_events, "{m:?}");
    assert_eq!(
        (m.events_dropped, m.errors, m.queued_events),
        (0, 0, 0),
        "{m:?}"
    );
    let (letters, _) = host.dead_letters();
    assert!(
        !letters
            .iter()
            .any(|l| l.target == "tally" || l.target == "counter"),
        "{letters:?}"
    );

    // The faulty plugin: quarantined, as often as the thread saw it.
    assert!(faulty.unexpected.is_empty(), "{faulty:?}");
    assert!(faulty.quarantines >= 1, "{faulty:?}");
    assert!(faulty.panics >= 4 * faulty.quarantines, "{faulty:?}");
    assert_eq!(info(&host, "faulty").state, PluginState::Quarantined);
    // The last announcement may still be on its way when the state already says quarantined.
    let mut announced = 0;
    wait_until("every quarantine was announced", || {
        announced += quarantined.receiver().try_iter().count() as u64;
        announced >= faulty.quarantines
    });
    assert_eq!(announced, faulty.quarantines, "{faulty:?}");

    // Memory: bounded, apart from the images the reloads retired (never unmapped).
    let (_, retired_after) = host.mapped_images();
    let retired = retired_after.saturating_sub(retired_before);
    assert!(
        retired >= reloads,
        "{retired} images retired by {reloads} reloads"
    );
    if let (Some(before), Some(after)) = (rss_before, resident_bytes()) {
        let image = builds.iter().map(|b| b.len() as u64).max().unwrap_or(0);
        let allowed = RSS_SLACK_BYTES + retired * image;
        let grown = after.saturating_sub(before);
        assert!(
            grown <= allowed,
            "resident memory grew by {grown} bytes (allowed {allowed}: {retired} retired images of up to {image} bytes + {RSS_SLACK_BYTES})"
        );
    }
    eprintln!(
        "soak: {:?}, {emitted} events, {increments} increments, {reloads} reloads, {} panics, {} quarantines",
        started.elapsed(),
        faulty.panics,
        faulty.quarantines
    );
}
