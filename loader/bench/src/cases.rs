//! The cases of the suite, each measuring ours and its baseline in the same run.

use std::time::{Duration, Instant};

use super::{
    fixtures::{fleet, host_for, load_checked, WorkDir},
    measure::{
        alternate, median, micros, process_cpu_time, quantile, resident_kib, threads_cpu_time,
        virtual_kib, Paired,
    },
    BenchEnv, BenchError, CaseResult, CommandBench, DirectCallBench, FanoutBench, LoadBench,
    Machine, ReloadBench, ScalingPoint, SuiteOptions, SuiteReport, EXAMPLE_PLUGINS,
};

fn range(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// `command_roundtrip`: µs per `execute` of the 58-byte command, against the crossbeam pair.
/// Target: ratio ≤ 1.3.
///
/// # Errors
/// A library is missing or a call fails.
pub fn command_roundtrip(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    let bench = CommandBench::new(env, 0)?;
    let paired = alternate(
        options.rounds,
        || bench.ours_block(options.calls),
        || bench.baseline_block(options.calls),
    )?;
    let (ours, baseline) = paired.medians();
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    let mut case = CaseResult::new("command_roundtrip", "µs", "ratio ≤ 1.3").pair(ours, baseline);
    case.met = case.ratio.is_some_and(|r| r <= 1.3);
    case.note = format!(
        "{} B request; medians of {} blocks of {} calls; ours {olo:.1}–{ohi:.1}, baseline {blo:.1}–{bhi:.1}",
        bench.payload_bytes(),
        options.rounds,
        options.calls
    );
    Ok(case)
}

/// `direct_call`: ns per call of the plugin's `echo` handler through its vtable on the
/// caller's thread, against the same handler as a plain Rust call. Reported only.
///
/// # Errors
/// A library is missing or a call fails.
pub fn direct_call(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    let mut bench = DirectCallBench::new(env)?;
    let calls = options.calls * 20;
    let mut run = |command: &str| -> Result<(f64, f64), BenchError> {
        bench.blocks(command, calls)?;
        let (mut ours, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..options.rounds.max(1) {
            let (o, p) = bench.blocks(command, calls)?;
            ours.push(o);
            plain.push(p);
        }
        Ok((median(&mut ours), median(&mut plain)))
    };
    let (echo, echo_plain) = run("echo")?;
    let (noop, noop_plain) = run("noop")?;
    let mut case = CaseResult::new("direct_call", "ns", "report").pair(echo, echo_plain);
    case.note = format!(
        "the echo handler (bincode decode + encode); an empty handler: {noop:.1} ns through the vtable, {noop_plain:.1} ns plain. The host itself never calls a plugin on the caller's thread"
    );
    Ok(case)
}

/// `event_fanout_<n>`: millions of events per second from one emitter to `subscribers` plugins,
/// against crossbeam fan-out to as many threads. Target for 4: ratio ≥ 0.75.
///
/// # Errors
/// A library is missing, an emit fails or events are lost.
pub fn event_fanout(
    env: &BenchEnv,
    options: &SuiteOptions,
    subscribers: usize,
) -> Result<CaseResult, BenchError> {
    let bench = FanoutBench::new(env, subscribers, options.events, 0)?;
    let paired = fanout_batches(&bench, options.event_rounds)?;
    let (ours, baseline) = paired.medians();
    let target = if subscribers == 4 {
        "ratio ≥ 0.75"
    } else {
        "report"
    };
    let mut case = CaseResult::new(&format!("event_fanout_{subscribers}"), "M events/s", target)
        .pair(ours, baseline);
    if subscribers == 4 {
        case.met = case.ratio.is_some_and(|r| r >= 0.75);
    }
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    case.note = format!(
        "medians of {} batches of {} events (58 B data) + a count from every subscriber, none dropped; ours {olo:.2}–{ohi:.2}, baseline {blo:.2}–{bhi:.2}",
        options.event_rounds, options.events
    );
    Ok(case)
}

/// Alternating fan-out batches, in millions of events per second. Each batch starts from
/// quiet threads on both sides: without the pause, one side's threads may still be polling for
/// their next message when the other side's batch starts, and take CPU time from it.
pub(crate) fn fanout_batches(bench: &FanoutBench, rounds: usize) -> Result<Paired, BenchError> {
    let rate = |d: Duration| bench.events() as f64 / d.as_secs_f64() / 1e6;
    let quiet = || std::thread::sleep(Duration::from_millis(1));
    alternate(
        rounds,
        || {
            quiet();
            bench.ours().map(rate)
        },
        || {
            quiet();
            bench.baseline().map(rate)
        },
    )
}

/// `load_one`: µs from a file to an active plugin, against a raw load of a fresh copy.
/// Target: ratio ≤ 1.5.
///
/// # Errors
/// A library is missing or does not load.
pub fn load_one(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    let bench = LoadBench::new(env, 1)?;
    let paired = alternate(
        options.loads,
        || bench.ours().map(micros),
        || bench.raw().map(micros),
    )?;
    let (ours, baseline) = paired.medians();
    let mut case = CaseResult::new("load_one", "µs", "ratio ≤ 1.5").pair(ours, baseline);
    case.met = case.ratio.is_some_and(|r| r <= 1.5);
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    case.note = format!(
        "{} loads each; ours {olo:.0}–{ohi:.0}, raw {blo:.0}–{bhi:.0}",
        options.loads
    );
    Ok(case)
}

/// `load_<n>`: ms to load a folder of `n` plugins into a fresh host, against `n` raw loads.
/// Reported only.
///
/// # Errors
/// A library is missing or does not load.
pub fn load_many(
    env: &BenchEnv,
    options: &SuiteOptions,
    n: usize,
) -> Result<CaseResult, BenchError> {
    let bench = LoadBench::new(env, n)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let paired = alternate(
        options.fleet_rounds,
        || bench.ours().map(ms),
        || bench.raw().map(ms),
    )?;
    let (ours, baseline) = paired.medians();
    let mut case = CaseResult::new(&format!("load_{n}"), "ms", "report").pair(ours, baseline);
    case.note = format!(
        "{:.0} µs per plugin (raw {:.0} µs); median of {}",
        ours * 1e3 / n as f64,
        baseline * 1e3 / n as f64,
        options.fleet_rounds
    );
    Ok(case)
}

/// `reload_swap`: ms from `apply_file` on a changed file until the new version answers, with
/// commands arriving every ~100 µs meanwhile. Target: median ≤ 5 ms and no command lost.
///
/// # Errors
/// A library is missing or a reload is refused.
pub fn reload_swap(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    let bench = ReloadBench::new(env, true)?;
    bench.swap()?;
    let mut samples = Vec::with_capacity(options.reloads);
    for _ in 0..options.reloads.max(1) {
        samples.push(bench.swap()?.as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(2));
    }
    let (calls, failures, last) = bench.traffic();
    let ours = median(&mut samples.clone());
    let p90 = quantile(&mut samples.clone(), 0.9);
    let (_, max) = range(&samples);
    let mut case = CaseResult::new("reload_swap", "ms", "≤ 5 ms, 0 lost");
    case.ours = Some(ours);
    case.met = ours <= 5.0 && failures == 0;
    case.note = format!(
        "median of {} reloads (p90 {p90:.2}, max {max:.2}); {calls} commands during the reloads, {failures} failed{}",
        samples.len(),
        last.map(|e| format!(" (last: {e})")).unwrap_or_default()
    );
    Ok(case)
}

/// `recorder_overhead`: `command_roundtrip` with the flight recorder on, against off.
/// Target: ratio ≤ 1.1.
///
/// # Errors
/// A library is missing or a call fails.
pub fn recorder_overhead(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    let bench = CommandBench::new(env, 0)?;
    let host = bench.host();
    let paired = alternate(
        options.rounds,
        || {
            host.set_recording(true);
            bench.ours_block(options.calls)
        },
        || {
            host.set_recording(false);
            bench.ours_block(options.calls)
        },
    )?;
    host.set_recording(true);
    let (on, off) = paired.medians();
    let mut case = CaseResult::new("recorder_overhead", "µs", "ratio ≤ 1.1").pair(on, off);
    case.met = case.ratio.is_some_and(|r| r <= 1.1);
    case.note = "ours: recorder on; baseline: recorder off".to_owned();
    Ok(case)
}

/// `idle_cpu`: CPU used by the process, in % of one core, while the example plugins are loaded,
/// a folder watcher runs and nothing happens. Target: ≤ 0.5 %.
///
/// # Errors
/// A library is missing or does not load, or the watcher cannot start.
pub fn idle_cpu(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    const CASE: &str = "idle_cpu";
    let dir = WorkDir::new("idle")?;
    for name in EXAMPLE_PLUGINS {
        dir.add(&env.example_lib(name)?)?;
    }
    let host = host_for(dir.path())?;
    load_checked(&host, CASE, EXAMPLE_PLUGINS.len())?;
    let watcher = host
        .watch(Duration::from_millis(250), Box::new(|_, _| {}))
        .map_err(|source| BenchError::Watch { case: CASE, source })?;
    // Let activation settle (lifecycle events, first log lines).
    std::thread::sleep(Duration::from_millis(300));
    let (ticks0, fine0, started) = (process_cpu_time(), threads_cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_millis(options.idle_ms));
    let (ticks1, fine1, wall) = (process_cpu_time(), threads_cpu_time(), started.elapsed());
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let percent = |a: Option<Duration>, b: Option<Duration>| {
        a.zip(b)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64() * 100.0)
    };
    let fine = percent(fine0, fine1);
    let coarse = percent(ticks0, ticks1);
    let mut case = CaseResult::new(CASE, "% of a core", "~0 (≤ 0.5 %)");
    case.ours = fine.or(coarse);
    case.met = case.ours.is_some_and(|p| p <= 0.5);
    case.note = format!(
        "{} example plugins and a {} watcher, {:.1} s; {threads} threads in the process; /proc/self/stat (10 ms ticks): {}",
        EXAMPLE_PLUGINS.len(),
        if watcher.polling { "polling" } else { "notify" },
        wall.as_secs_f64(),
        coarse.map_or("n/a".to_owned(), |p| format!("{p:.2} %"))
    );
    drop(watcher);
    Ok(case)
}

/// `memory_per_plugin`: KiB of resident memory per plugin loaded from a folder of
/// `options.fleet`, against per raw load of the same libraries; per reload in the note.
/// Reported only; `n/a` where `/proc` is missing.
///
/// # Errors
/// A library is missing or does not load.
pub fn memory_per_plugin(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    const CASE: &str = "memory_per_plugin";
    let n = options.fleet.max(1);
    let mut case = CaseResult::new(CASE, "KiB", "report");
    let dir = WorkDir::new("memory")?;
    let files = fleet(env, dir.path(), 0, n)?;
    let raw = WorkDir::new("memory-raw")?;
    let raw_copies: Vec<_> = files
        .iter()
        .map(|f| {
            let to = raw.path().join(format!(
                "raw-{}",
                f.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::copy(f, &to).map(|_| to).map_err(BenchError::io(f))
        })
        .collect::<Result<_, _>>()?;

    let host = host_for(dir.path())?;
    let (rss0, vm0) = (resident_kib(), virtual_kib());
    load_checked(&host, CASE, n)?;
    std::thread::sleep(Duration::from_millis(200));
    let (rss1, vm1) = (resident_kib(), virtual_kib());

    let rss2 = resident_kib();
    for copy in &raw_copies {
        abi_stable::library::lib_header_from_path(copy)
            .and_then(|h| h.init_root_module::<plugin_api::PluginModRef>())
            .map_err(|e| BenchError::check(CASE, format!("raw load: {e}")))?;
        let _ = std::fs::remove_file(copy);
    }
    let rss3 = resident_kib();

    let reload = ReloadBench::new(env, false)?;
    reload.swap()?;
    let (rss4, vm4) = (resident_kib(), virtual_kib());
    let reloads = options.reloads.max(1);
    for _ in 0..reloads {
        reload.swap()?;
    }
    let (rss5, vm5) = (resident_kib(), virtual_kib());

    let per = |a: Option<u64>, b: Option<u64>, n: usize| {
        a.zip(b).map(|(a, b)| (b as f64 - a as f64) / n as f64)
    };
    if let (Some(ours), Some(raw)) = (per(rss0, rss1, n), per(rss2, rss3, n)) {
        case = case.pair(ours, raw);
    }
    case.note = match (per(vm0, vm1, n), per(rss4, rss5, reloads), per(vm4, vm5, reloads)) {
        (Some(vm), Some(reload_rss), Some(reload_vm)) => format!(
            "{n} plugins; virtual {:.0} KiB per plugin (thread stack, queues, image); per reload: {reload_rss:.0} KiB resident, {:.0} KiB virtual (the retired image stays mapped)",
            vm,
            reload_vm
        ),
        _ => "n/a: no /proc on this platform".to_owned(),
    };
    drop(host);
    Ok(case)
}

/// How the costs grow: command round trip with payload size and with idle plugins loaded,
/// fan-out with subscriber count, payload size and the recorder off, loading with plugin count.
///
/// # Errors
/// As the cases.
pub fn scaling(env: &BenchEnv, options: &SuiteOptions) -> Result<Vec<ScalingPoint>, BenchError> {
    let rounds = options.rounds.div_ceil(2).max(3);
    let mut points = Vec::new();
    let mut push = |case: &str, parameter: &str, value: usize, ours: f64, baseline: f64, unit| {
        points.push(ScalingPoint {
            case: case.to_owned(),
            parameter: parameter.to_owned(),
            value: value as u64,
            ours,
            baseline: Some(baseline),
            unit: String::from(unit),
            ratio: (baseline > 0.0).then(|| ours / baseline),
        });
    };

    for extra in [0usize, 1024, 16 * 1024, 128 * 1024] {
        let bench = CommandBench::new(env, extra)?;
        let calls = (options.calls * 58 / (58 + extra)).max(20);
        let (ours, baseline) = alternate(
            rounds,
            || bench.ours_block(calls),
            || bench.baseline_block(calls),
        )?
        .medians();
        push(
            "command_roundtrip",
            "payload_bytes",
            bench.payload_bytes(),
            ours,
            baseline,
            "µs",
        );
    }
    for idle in [0usize, 100] {
        let bench = CommandBench::with_neighbours(env, 0, idle)?;
        let (ours, baseline) = alternate(
            rounds,
            || bench.ours_block(options.calls),
            || bench.baseline_block(options.calls),
        )?
        .medians();
        push(
            "command_roundtrip",
            "plugins_loaded",
            idle + 1,
            ours,
            baseline,
            "µs",
        );
    }

    let fanout =
        |subscribers: usize, extra: usize, recorder: bool| -> Result<(f64, f64), BenchError> {
            let bench = FanoutBench::new(env, subscribers, options.events, extra)?;
            bench.host().set_recording(recorder);
            Ok(fanout_batches(&bench, options.event_rounds.div_ceil(2).max(3))?.medians())
        };
    for subscribers in [1usize, 2, 4, 8] {
        let (ours, baseline) = fanout(subscribers, 0, true)?;
        push(
            "event_fanout",
            "subscribers",
            subscribers,
            ours,
            baseline,
            "M events/s",
        );
    }
    let (ours, baseline) = fanout(4, 4096, true)?;
    push(
        "event_fanout_4",
        "event_data_bytes",
        4096 + 58,
        ours,
        baseline,
        "M events/s",
    );
    let (ours, baseline) = fanout(4, 0, false)?;
    push(
        "event_fanout_4 (recorder off)",
        "recorder",
        0,
        ours,
        baseline,
        "M events/s",
    );

    for n in [1usize, 10, 30, 100] {
        let bench = LoadBench::new(env, n)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (ours, baseline) = alternate(
            options.fleet_rounds,
            || bench.ours().map(ms),
            || bench.raw().map(ms),
        )?
        .medians();
        push("load", "plugins", n, ours, baseline, "ms");
    }
    Ok(points)
}

/// One case of the suite. [`Case::RUN_ORDER`] is the one list of cases: [`run_suite`] runs
/// them from it and [`case_names`] names them from it, so a progress display built on the
/// names cannot fall out of step with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    MemoryPerPlugin,
    IdleCpu,
    CommandRoundtrip,
    RecorderOverhead,
    DirectCall,
    EventFanout4,
    LoadOne,
    LoadMany,
    ReloadSwap,
    IsolatedIdleMemory,
    IsolatedRoundtrip,
    IsolatedFanout4,
    IsolatedLoadOne,
}

impl Case {
    /// The order the cases run in: memory and idle CPU first, while the process is fresh.
    const RUN_ORDER: [Case; 13] = [
        Case::MemoryPerPlugin,
        Case::IdleCpu,
        Case::CommandRoundtrip,
        Case::RecorderOverhead,
        Case::DirectCall,
        Case::EventFanout4,
        Case::LoadOne,
        Case::LoadMany,
        Case::ReloadSwap,
        Case::IsolatedIdleMemory,
        Case::IsolatedRoundtrip,
        Case::IsolatedFanout4,
        Case::IsolatedLoadOne,
    ];

    /// The order the report lists them in.
    const REPORT_ORDER: [Case; 13] = [
        Case::CommandRoundtrip,
        Case::DirectCall,
        Case::EventFanout4,
        Case::LoadOne,
        Case::LoadMany,
        Case::ReloadSwap,
        Case::RecorderOverhead,
        Case::IdleCpu,
        Case::MemoryPerPlugin,
        Case::IsolatedRoundtrip,
        Case::IsolatedFanout4,
        Case::IsolatedLoadOne,
        Case::IsolatedIdleMemory,
    ];

    /// The name its [`CaseResult`] carries (`load_<n>` depends on the fleet size).
    fn name(self, options: &SuiteOptions) -> String {
        match self {
            Case::MemoryPerPlugin => "memory_per_plugin".to_owned(),
            Case::IdleCpu => "idle_cpu".to_owned(),
            Case::CommandRoundtrip => "command_roundtrip".to_owned(),
            Case::RecorderOverhead => "recorder_overhead".to_owned(),
            Case::DirectCall => "direct_call".to_owned(),
            Case::EventFanout4 => "event_fanout_4".to_owned(),
            Case::LoadOne => "load_one".to_owned(),
            Case::LoadMany => format!("load_{}", options.fleet),
            Case::ReloadSwap => "reload_swap".to_owned(),
            Case::IsolatedIdleMemory => "isolated_idle_memory".to_owned(),
            Case::IsolatedRoundtrip => "isolated_roundtrip".to_owned(),
            Case::IsolatedFanout4 => "isolated_fanout_4".to_owned(),
            Case::IsolatedLoadOne => "isolated_load_one".to_owned(),
        }
    }

    fn run(self, env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
        match self {
            Case::MemoryPerPlugin => memory_per_plugin(env, options),
            Case::IdleCpu => idle_cpu(env, options),
            Case::CommandRoundtrip => command_roundtrip(env, options),
            Case::RecorderOverhead => recorder_overhead(env, options),
            Case::DirectCall => direct_call(env, options),
            Case::EventFanout4 => event_fanout(env, options, 4),
            Case::LoadOne => load_one(env, options),
            Case::LoadMany => load_many(env, options, options.fleet),
            Case::ReloadSwap => reload_swap(env, options),
            Case::IsolatedIdleMemory => super::isolated_idle_memory(env, options),
            Case::IsolatedRoundtrip => super::isolated_roundtrip(env, options),
            Case::IsolatedFanout4 => super::isolated_fanout(env, options),
            Case::IsolatedLoadOne => super::isolated_load_one(env, options),
        }
    }
}

/// The names of the cases [`run_suite`] runs with `options`, in the order it runs them (its
/// report lists them in another order). A progress display names the case running from it.
pub fn case_names(options: &SuiteOptions) -> Vec<String> {
    selected(options).map(|c| c.name(options)).collect()
}

/// The cases `options` selects ([`SuiteOptions::only`]), in run order.
fn selected(options: &SuiteOptions) -> impl Iterator<Item = Case> + '_ {
    Case::RUN_ORDER.into_iter().filter(|case| {
        let name = case.name(options);
        options.only.is_empty() || options.only.iter().any(|part| name.contains(part.as_str()))
    })
}

/// Runs every case in [`case_names`] order (memory and idle CPU first, while the process is
/// fresh), then the growth curves if asked, calling `progress` after each case.
///
/// # Errors
/// The first case that cannot run.
pub fn run_suite(
    env: &BenchEnv,
    options: &SuiteOptions,
    mut progress: impl FnMut(&CaseResult),
) -> Result<SuiteReport, BenchError> {
    env.check()?;
    let mut cases = Vec::new();
    for case in selected(options) {
        let result = case.run(env, options)?;
        progress(&result);
        cases.push(result);
    }
    let report_names: Vec<String> = Case::REPORT_ORDER.iter().map(|c| c.name(options)).collect();
    cases.sort_by_key(|c| {
        report_names
            .iter()
            .position(|n| *n == c.name)
            .unwrap_or(report_names.len())
    });
    let scaling = if options.scaling && options.only.is_empty() {
        scaling(env, options)?
    } else {
        Vec::new()
    };
    Ok(SuiteReport {
        machine: Machine::current(),
        cases,
        scaling,
    })
}
