//! The loader's benchmark suite, a crate of its own (`loader/bench/`, not published): each
//! case measures the host and the raw mechanism it is built on **in the same run**, and
//! reports the ratio, since absolute numbers drift on shared machines and ratios hold.
//!
//! The same cases serve the criterion benches (`cargo bench -p loader-bench`) and a
//! host's own bench command. Each case needs real plugin libraries, found through a
//! [`BenchEnv`]: the benchmark plugins (`plugins/bench/*`) and the example plugins.
//!
//! ```no_run
//! use loader_bench::{run_suite, BenchEnv, SuiteOptions};
//!
//! let env = BenchEnv::from_build_dir("target/release/deps")?;
//! let report = run_suite(&env, &SuiteOptions::default(), |case| eprintln!("{}", case.name))?;
//! println!("{}", report.table());
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cases
//! | name | ours | baseline in the same run | target |
//! |---|---|---|---|
//! | `command_roundtrip` | [`Host::execute`](loader::Host::execute) of a 58-byte bincode command | crossbeam request/response between two threads, same payload, same encode and decode | ratio ≤ 1.3 |
//! | `direct_call` | the plugin's `handle_command` called through its abi_stable vtable, on the caller's thread | the same handler as a plain Rust call | report |
//! | `event_fanout_4` | [`Host::emit`](loader::Host::emit) to 4 subscribing plugins | crossbeam fan-out of `Arc<Event>` to 4 threads | throughput ratio ≥ 0.75 |
//! | `load_one` | one file to an active plugin, in a running host | copy + `lib_header_from_path` + `init_root_module` | ratio ≤ 1.5 |
//! | `load_100` | a folder of 100 plugins to active | 100 raw loads | report |
//! | `reload_swap` | [`Host::apply_file`](loader::Host::apply_file) on a changed file until the new version serves, under traffic | — | ≤ 5 ms, 0 calls lost |
//! | `recorder_overhead` | `command_roundtrip` with the flight recorder on | the same with it off | ratio ≤ 1.1 |
//! | `idle_cpu` | process CPU with the example plugins loaded, a folder watcher running, nothing happening | — | ~0 % (≤ 0.5 % of one core) |
//! | `memory_per_plugin` | resident memory per loaded plugin (per reload in the note) | resident memory per raw load | report |
//! | `isolated_roundtrip` | `command_roundtrip`'s call to an isolated plugin (a worker process) | the same 58 bytes through a raw pipe ping-pong with a second process (`cat`) | ratio ≤ 4 |
//! | `isolated_fanout_4` | `event_fanout_4` to four isolated subscribers | the in-process raw fan-out | aim ratio ≥ 0.25 |
//! | `isolated_load_one` | one file to an active isolated plugin: worker start, handshake, the child's checked load, activation | `load_one` in process | report |
//! | `isolated_idle_memory` | resident memory of an idle isolated plugin: the worker's resident set plus the host's growth | the host's growth for the same plugin in process | report |
//!
//! The isolation cases need [`SuiteOptions::worker_program`]; without it they are reported as
//! not run.
//!
//! # Fixtures
//! [`CommandBench`], [`FanoutBench`], [`DirectCallBench`], [`LoadBench`] and [`ReloadBench`]
//! hold a prepared host and its baseline, and run one operation of each per call: the criterion
//! benches drive them directly, the case functions time blocks of them.
//!
//! The 100-plugin folder is made of copies of `bench-sink-a` whose plugin name (stored once in
//! the library as the bytes `bench-sink-a`) is rewritten to `bench-s00000` … `bench-s00099`.

use std::{
    env::consts::{DLL_PREFIX, DLL_SUFFIX},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use loader::{BuildError, LoadError, WatchError};

mod cases;
mod fixtures;
mod isolated;
mod measure;

pub use cases::case_names;
pub use cases::{
    command_roundtrip, direct_call, event_fanout, idle_cpu, load_many, load_one, memory_per_plugin,
    recorder_overhead, reload_swap, run_suite, scaling,
};
pub use fixtures::{CommandBench, DirectCallBench, FanoutBench, LoadBench, ReloadBench};
pub use isolated::{
    isolated_fanout, isolated_idle_memory, isolated_load_one, isolated_roundtrip,
    IsolatedCommandBench,
};
pub use measure::{cpu_model, mapped_regions, process_cpu_time, resident_kib};

/// The example plugin crates, loaded by `idle_cpu`.
pub const EXAMPLE_PLUGINS: [&str; 9] = [
    "greeter",
    "welcome",
    "audit-log",
    "echo",
    "counter",
    "notes",
    "validator",
    "users",
    "scripts",
];

/// The benchmark plugin crates (`plugins/bench/*`).
pub const BENCH_PLUGINS: [&str; 6] = [
    "bench-sink-a",
    "bench-sink-b",
    "bench-sink-c",
    "bench-sink-d",
    "bench-echo",
    "bench-echo-next",
];

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A plugin library the suite needs is not where it was looked for.
    #[error("plugin library {path} not found (build it: cargo build --release -p {crate_name})")]
    MissingLibrary {
        /// The crate that builds it.
        crate_name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A scratch file or folder could not be written or read.
    #[error("cannot use {path}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A host could not be created.
    #[error("cannot create a host")]
    Host(#[from] BuildError),
    /// A plugin did not load or activate.
    #[error("{case}: loading failed")]
    Load {
        /// The case.
        case: &'static str,
        /// Why.
        #[source]
        source: std::sync::Arc<LoadError>,
    },
    /// The folder watcher could not start.
    #[error("{case}: cannot watch the plugins folder")]
    Watch {
        /// The case.
        case: &'static str,
        /// Why.
        #[source]
        source: WatchError,
    },
    /// A call into the host failed.
    #[error("{case}: {source}")]
    Call {
        /// The case.
        case: &'static str,
        /// The host's or plugin's error.
        source: plugin_api::PluginError,
    },
    /// A result was not what the case expects (events lost, wrong version, …).
    #[error("{case}: {message}")]
    Check {
        /// The case.
        case: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl BenchError {
    pub(crate) fn call(case: &'static str) -> impl FnOnce(plugin_api::PluginError) -> BenchError {
        move |source| BenchError::Call { case, source }
    }

    pub(crate) fn load<E: Into<std::sync::Arc<LoadError>>>(
        case: &'static str,
    ) -> impl FnOnce(E) -> BenchError {
        move |source| BenchError::Load {
            case,
            source: source.into(),
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
        move |source| BenchError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn check(case: &'static str, message: impl Into<String>) -> BenchError {
        BenchError::Check {
            case,
            message: message.into(),
        }
    }
}

/// Where the plugin libraries are.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    /// The folder holding the benchmark plugins' libraries (`libbench_sink_a.so`, …).
    pub bench_plugins: PathBuf,
    /// The folder holding the example plugins' libraries (`libgreeter.so`, …).
    pub example_plugins: PathBuf,
}

impl BenchEnv {
    /// Both kinds of libraries in `dir`, as cargo leaves them in `target/<profile>/deps` for a
    /// crate that depends on the plugin crates.
    ///
    /// # Errors
    /// [`BenchError::MissingLibrary`] for the first library not in `dir`.
    pub fn from_build_dir(dir: impl Into<PathBuf>) -> Result<Self, BenchError> {
        let dir = dir.into();
        let env = BenchEnv {
            bench_plugins: dir.clone(),
            example_plugins: dir,
        };
        env.check()?;
        Ok(env)
    }

    /// The libraries next to the running executable: in its own folder when it lives in
    /// `target/<profile>/deps` (a bench or test binary), in `../deps` from
    /// `target/<profile>/examples`, else in `deps/` beside it (a binary in `target/<profile>`).
    ///
    /// # Errors
    /// As [`BenchEnv::from_build_dir`]; also when the executable's path is unknown.
    pub fn beside_executable() -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(BenchError::io(Path::new("<executable>")))?;
        let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        match dir.file_name() {
            Some(n) if n == "deps" => Self::from_build_dir(dir),
            Some(n) if n == "examples" => {
                let profile = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                Self::from_build_dir(profile.join("deps"))
            }
            _ => Self::from_build_dir(dir.join("deps")),
        }
    }

    /// Checks that every library the suite uses is there.
    ///
    /// # Errors
    /// [`BenchError::MissingLibrary`] for the first one missing.
    pub fn check(&self) -> Result<(), BenchError> {
        for name in BENCH_PLUGINS {
            self.bench_lib(name)?;
        }
        for name in EXAMPLE_PLUGINS {
            self.example_lib(name)?;
        }
        Ok(())
    }

    /// The library of benchmark plugin crate `crate_name`.
    ///
    /// # Errors
    /// [`BenchError::MissingLibrary`].
    pub fn bench_lib(&self, crate_name: &str) -> Result<PathBuf, BenchError> {
        find_lib(&self.bench_plugins, crate_name)
    }

    /// The library of example plugin crate `crate_name`.
    ///
    /// # Errors
    /// [`BenchError::MissingLibrary`].
    pub fn example_lib(&self, crate_name: &str) -> Result<PathBuf, BenchError> {
        find_lib(&self.example_plugins, crate_name)
    }
}

fn find_lib(dir: &Path, crate_name: &str) -> Result<PathBuf, BenchError> {
    let path = dir.join(format!(
        "{DLL_PREFIX}{}{DLL_SUFFIX}",
        crate_name.replace('-', "_")
    ));
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::MissingLibrary {
            crate_name: crate_name.to_owned(),
            path,
        })
    }
}

/// How long the suite measures. [`SuiteOptions::default`] runs in about a minute on two cores;
/// [`SuiteOptions::quick`] in a few seconds, for smoke tests.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteOptions {
    /// Alternating blocks of ours and the baseline per per-call case (the medians are
    /// reported).
    pub rounds: usize,
    /// Calls per block in the round-trip cases.
    pub calls: usize,
    /// Events per block in the fan-out case; below the event queue bound, so none is dropped.
    pub events: usize,
    /// Alternating blocks of the fan-out case. A block lasts about a millisecond, so a timer
    /// tick or another process decides a single block's time: it takes many for a stable median.
    /// 183 of them (about 0.6 s with the pauses) span more of the scheduler's placements of the
    /// five busy threads on a two-CPU machine, which last hundreds of milliseconds and move
    /// either side's rate by up to a third. With 61, one run's ratio followed the placement it
    /// happened to get more often; a placement can still last a whole case (BENCHMARKS.md,
    /// twelfth session).
    pub event_rounds: usize,
    /// Loads timed in `load_one`, each side.
    pub loads: usize,
    /// Plugins in the folder of `load_<fleet>` (`load_100` by default) and `memory_per_plugin`.
    pub fleet: usize,
    /// Repetitions of the folder load, each side: five, so that the median is an undisturbed
    /// round's unless three of them were disturbed.
    pub fleet_rounds: usize,
    /// Reloads timed in `reload_swap` (and measured for memory).
    pub reloads: usize,
    /// How long `idle_cpu` watches the idle host, in milliseconds.
    pub idle_ms: u64,
    /// Whether [`run_suite`] also measures how the costs grow ([`scaling`]).
    pub scaling: bool,
    /// The program started for worker processes in the process-isolation cases (an executable
    /// that calls `loader::worker::run_if_worker()` first in `main`); without one those cases
    /// are reported as not run.
    pub worker_program: Option<PathBuf>,
    /// Runs only the cases whose name contains one of these (`isolated`, `load_one`); empty:
    /// every case. The growth curves run only with every case.
    pub only: Vec<String>,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            rounds: 15,
            calls: 300,
            events: 1000,
            event_rounds: 183,
            loads: 40,
            fleet: 100,
            fleet_rounds: 5,
            reloads: 30,
            idle_ms: 3000,
            scaling: true,
            worker_program: None,
            only: Vec::new(),
        }
    }
}

impl SuiteOptions {
    /// Few repetitions: checks that every case runs, not what it costs.
    pub fn quick() -> Self {
        SuiteOptions {
            rounds: 2,
            calls: 20,
            events: 100,
            event_rounds: 2,
            loads: 2,
            // Enough to exercise a folder load; a debug plugin library is ~15 MB, and copying
            // and loading many of them is most of a debug build's quick run.
            fleet: 5,
            fleet_rounds: 1,
            reloads: 2,
            idle_ms: 100,
            scaling: false,
            worker_program: None,
            only: Vec::new(),
        }
    }
}

/// One case's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseResult {
    /// Case name (`command_roundtrip`, …).
    pub name: String,
    /// Our measurement, in `unit`; `None` where the platform cannot measure it.
    pub ours: Option<f64>,
    /// The raw baseline measured in the same run, if the case has one.
    pub baseline: Option<f64>,
    /// Unit of `ours` and `baseline`.
    pub unit: String,
    /// `ours / baseline` (for throughputs, higher is better; for times, lower).
    pub ratio: Option<f64>,
    /// The target, in words (`ratio ≤ 1.3`, `report`).
    pub target: String,
    /// Whether the target is met (`true` for cases that are only reported).
    pub met: bool,
    /// What else was measured (spread, counts, the other half of a pair).
    pub note: String,
}

impl CaseResult {
    pub(crate) fn new(name: &str, unit: &str, target: &str) -> Self {
        CaseResult {
            name: name.to_owned(),
            ours: None,
            baseline: None,
            unit: unit.to_owned(),
            ratio: None,
            target: target.to_owned(),
            met: true,
            note: String::new(),
        }
    }

    pub(crate) fn pair(mut self, ours: f64, baseline: f64) -> Self {
        self.ours = Some(ours);
        self.baseline = Some(baseline);
        self.ratio = (baseline > 0.0).then(|| ours / baseline);
        self
    }
}

/// One point of a growth curve: a case measured at one value of one parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScalingPoint {
    /// The case.
    pub case: String,
    /// What varies (`payload_bytes`, `subscribers`, `plugins`, …).
    pub parameter: String,
    /// Its value.
    pub value: u64,
    /// Our measurement.
    pub ours: f64,
    /// The baseline, if any.
    pub baseline: Option<f64>,
    /// Unit of both.
    pub unit: String,
    /// `ours / baseline`.
    pub ratio: Option<f64>,
}

/// The machine the suite ran on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// CPU model (`/proc/cpuinfo` on Linux).
    pub cpu_model: String,
    /// Operating system.
    pub os: String,
    /// `release` or `debug` (of the build running the suite).
    pub profile: String,
}

impl Machine {
    /// This machine.
    pub fn current() -> Self {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model().unwrap_or_else(|| "unknown".to_owned()),
            os: std::env::consts::OS.to_owned(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
        }
    }
}

/// Everything one run of the suite measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuiteReport {
    /// Where it ran.
    pub machine: Machine,
    /// The cases, in the suite's order.
    pub cases: Vec<CaseResult>,
    /// Growth curves (empty unless asked for).
    pub scaling: Vec<ScalingPoint>,
}

impl SuiteReport {
    /// Whether every case met its target.
    pub fn all_met(&self) -> bool {
        self.cases.iter().all(|c| c.met)
    }

    /// The cases and growth points as Markdown tables.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "machine: {} CPUs, {}, {} ({} build)\n\n| case | ours | baseline | unit | ratio | target | met | note |\n|---|---|---|---|---|---|---|---|\n",
            m.cpus, m.cpu_model, m.os, m.profile
        );
        for c in &self.cases {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                format_number(c.ours),
                format_number(c.baseline),
                c.unit,
                c.ratio.map_or("—".to_owned(), |r| format!("{r:.2}")),
                c.target,
                if c.met { "yes" } else { "**no**" },
                c.note
            ));
        }
        if !self.scaling.is_empty() {
            out.push_str("\n| case | parameter | value | ours | baseline | unit | ratio |\n|---|---|---|---|---|---|---|\n");
            for p in &self.scaling {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    p.case,
                    p.parameter,
                    p.value,
                    format_number(Some(p.ours)),
                    format_number(p.baseline),
                    p.unit,
                    p.ratio.map_or("—".to_owned(), |r| format!("{r:.2}")),
                ));
            }
        }
        out
    }
}

/// A measurement with three significant digits, or `n/a` (as the tables show them).
pub fn format_number(value: Option<f64>) -> String {
    match value {
        None => "n/a".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The benchmark command's request: the same shape as `bench-echo`'s `Sample`, 58 bytes in
/// bincode when `data` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// A large id.
    pub id: u64,
    /// A timestamp.
    pub timestamp: u64,
    /// A 24-character name.
    pub name: String,
    /// A score.
    pub score: f64,
    /// Flags.
    pub flags: u32,
    /// A flag.
    pub ok: bool,
    /// Extra bytes that scale the payload.
    pub data: Vec<u8>,
}

impl Sample {
    /// A sample with `extra` bytes of data (58 bytes encoded, plus `extra` and its length).
    pub fn new(extra: usize) -> Self {
        Sample {
            id: u64::MAX - 7,
            timestamp: 1_700_000_000_000_000_000,
            name: "bench-sample-0123456789a".to_owned(),
            score: 0.5,
            flags: u32::MAX,
            ok: true,
            data: (0..extra).map(|i| (i % 251) as u8).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_58_bytes() {
        let payload = plugin_api::Payload::encode(&Sample::new(0)).expect("encode");
        assert_eq!(payload.len(), 58);
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(format_number(None), "n/a");
        assert_eq!(format_number(Some(0.0)), "0");
        assert_eq!(format_number(Some(0.01234)), "0.012");
        assert_eq!(format_number(Some(1.234)), "1.23");
        assert_eq!(format_number(Some(12.34)), "12.3");
        assert_eq!(format_number(Some(1234.5)), "1234");
    }

    /// One operation of every fixture against the plugins cargo built next to this test
    /// binary (timings are not looked at).
    #[test]
    fn every_fixture_runs_once() {
        let env = BenchEnv::beside_executable().expect("bench plugins built as dev-dependencies");
        CommandBench::new(&env, 0)
            .expect("command")
            .ours()
            .expect("execute");
        let fanout = FanoutBench::new(&env, 5, 10, 0).expect("fan-out with a renamed copy");
        fanout.ours().expect("emit");
        fanout.baseline().expect("raw fan-out");
        let mut direct = DirectCallBench::new(&env).expect("direct");
        direct.ours("echo").expect("vtable call");
        let load = LoadBench::new(&env, 1).expect("load");
        load.ours().expect("load one");
        load.ours().expect("load it again after deactivation");
        load.raw().expect("raw load");
        let reload = ReloadBench::new(&env, true).expect("reload");
        reload.swap().expect("to 0.2.0");
        reload.swap().expect("back to 0.1.0");
        assert_eq!(reload.traffic().1, 0, "no command fails during a reload");
    }

    #[test]
    fn a_pair_has_its_ratio() {
        let c = CaseResult::new("x", "µs", "report").pair(3.0, 2.0);
        assert_eq!(c.ratio, Some(1.5));
        let c = CaseResult::new("x", "µs", "report").pair(3.0, 0.0);
        assert_eq!(c.ratio, None);
    }
}
