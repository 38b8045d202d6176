//! The benchmark suite under criterion: in every group, ours and the raw baseline side by side,
//! measured in the same run.
//!
//! ```sh
//! cargo bench -p loader-bench                 # summary table, then every group
//! cargo bench -p loader-bench -- load         # only the groups matching "load"
//! BENCH_SKIP_SUMMARY=1 cargo bench -p loader-bench
//! ```
//!
//! First the suite's own summary (`loader_bench::run_suite`: every case with its ratio and
//! target, and the growth curves) runs in a child process, so that `memory_per_plugin` and
//! `idle_cpu` see a fresh process; it prints a Markdown table and writes
//! `target/bench-suite.json`. It is skipped when a filter is given. Then the criterion groups.
//!
//! Every load maps a library image that is never unmapped, so the load groups use few
//! samples: thousands of images cost memory and count against `vm.max_map_count`.

use std::{
    hint::black_box,
    path::PathBuf,
    process::{Command, ExitCode},
    time::Duration,
};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use loader_bench::{
    mapped_regions, run_suite, BenchEnv, CommandBench, DirectCallBench, FanoutBench, LoadBench,
    ReloadBench, SuiteOptions,
};

/// Runs only the summary, in this process (the parent starts the child with it).
const SUMMARY_FLAG: &str = "--suite-summary";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = match BenchEnv::beside_executable() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.iter().any(|a| a == SUMMARY_FLAG) {
        return summary(&env, args.iter().any(|a| a == "--quick"));
    }
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    let filtered = args.iter().any(|a| !a.starts_with('-'));
    if !test_mode && !filtered && std::env::var_os("BENCH_SKIP_SUMMARY").is_none() {
        let status =
            std::env::current_exe().and_then(|exe| Command::new(exe).arg(SUMMARY_FLAG).status());
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("error: the suite summary failed ({s})");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: cannot run the suite summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    command_roundtrip(&mut c, &env);
    recorder_overhead(&mut c, &env);
    direct_call(&mut c, &env);
    event_fanout(&mut c, &env);
    load(&mut c, &env);
    reload_swap(&mut c, &env);
    c.final_summary();
    ExitCode::SUCCESS
}

/// The suite's table of cases, ratios and targets; JSON in `target/bench-suite.json`.
fn summary(env: &BenchEnv, quick: bool) -> ExitCode {
    let options = if quick {
        SuiteOptions::quick()
    } else {
        SuiteOptions::default()
    };
    eprintln!("suite summary: every case against its raw baseline, in this run");
    let report = run_suite(env, &options, |case| {
        eprintln!(
            "  {:<20} {:>10} {:<11} baseline {:>10}  ratio {:>5}  {}",
            case.name,
            case.ours.map_or("n/a".into(), |v| format!("{v:.3}")),
            case.unit,
            case.baseline.map_or("—".into(), |v| format!("{v:.3}")),
            case.ratio.map_or("—".into(), |r| format!("{r:.2}")),
            if case.met { "ok" } else { "MISSED" }
        );
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", report.table());
    let json = target_dir().join("bench-suite.json");
    match serde_json::to_string_pretty(&report) {
        Ok(text) => match std::fs::write(&json, text) {
            Ok(()) => eprintln!("written: {}", json.display()),
            Err(e) => eprintln!("cannot write {}: {e}", json.display()),
        },
        Err(e) => eprintln!("cannot encode the report: {e}"),
    }
    ExitCode::SUCCESS
}

/// `target/` from this binary's place in `target/<profile>/deps/`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
}

fn command_roundtrip(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("command_roundtrip");
    for extra in [0, 16 * 1024] {
        let bench = CommandBench::new(env, extra).expect("bench-echo loads");
        let bytes = bench.payload_bytes();
        group.bench_function(BenchmarkId::new("ours", bytes), |b| {
            b.iter(|| bench.ours().expect("execute"));
        });
        group.bench_function(BenchmarkId::new("baseline", bytes), |b| {
            b.iter(|| bench.baseline().expect("crossbeam round trip"));
        });
    }
    group.finish();
}

fn recorder_overhead(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("recorder_overhead");
    let bench = CommandBench::new(env, 0).expect("bench-echo loads");
    for on in [true, false] {
        bench.host().set_recording(on);
        let name = if on { "recorder_on" } else { "recorder_off" };
        group.bench_function(name, |b| b.iter(|| bench.ours().expect("execute")));
    }
    group.finish();
}

fn direct_call(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("direct_call");
    let mut bench = DirectCallBench::new(env).expect("bench-echo instance");
    for command in ["echo", "noop"] {
        group.bench_function(BenchmarkId::new("vtable", command), |b| {
            b.iter(|| black_box(bench.ours(black_box(command)).expect("handler")));
        });
        group.bench_function(BenchmarkId::new("plain", command), |b| {
            b.iter(|| black_box(bench.baseline(black_box(command)).expect("handler")));
        });
    }
    group.finish();
}

fn event_fanout(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("event_fanout");
    for subscribers in [1, 4] {
        let bench = FanoutBench::new(env, subscribers, 1000, 0).expect("sinks load");
        group.throughput(Throughput::Elements(bench.events() as u64));
        group.bench_function(BenchmarkId::new("ours", subscribers), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.ours().expect("emit")).sum());
        });
        group.bench_function(BenchmarkId::new("baseline", subscribers), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.baseline().expect("fan-out")).sum());
        });
    }
    group.finish();
}

fn load(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("load");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(50))
        .measurement_time(Duration::from_millis(200));
    for n in [1, 100] {
        let bench = LoadBench::new(env, n).expect("plugin copies");
        group.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.ours().expect("load")).sum());
        });
        group.bench_function(BenchmarkId::new("raw", n), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.raw().expect("raw load")).sum());
        });
    }
    group.finish();
    if let Some(regions) = mapped_regions() {
        eprintln!("memory mappings after the load groups: {regions} (limit vm.max_map_count)");
    }
}

fn reload_swap(c: &mut Criterion, env: &BenchEnv) {
    let mut group = c.benchmark_group("reload_swap");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(50))
        .measurement_time(Duration::from_millis(300));
    let bench = ReloadBench::new(env, true).expect("bench-echo loads");
    group.bench_function("apply_file_to_serving", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bench.swap().expect("reload")).sum());
    });
    group.finish();
    let (calls, failures, last) = bench.traffic();
    eprintln!(
        "reload_swap: {calls} commands during the reloads, {failures} failed{}",
        last.map(|e| format!(" (last: {e})")).unwrap_or_default()
    );
}
