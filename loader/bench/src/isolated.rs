//! The process-isolation cases: the same plugins as the in-process cases, each run in a worker
//! process of its own, against raw baselines measured in the same run.
//!
//! They need a worker program ([`SuiteOptions::worker_program`]): an executable that calls
//! [`loader::worker::run_if_worker`] first in `main`. `demo-app bench` passes itself; without
//! one the cases are reported as not run.

use std::{
    hint::black_box,
    io::{Read, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use plugin_api::Payload;

use super::{
    fixtures::{host_in, load_checked, WorkDir},
    measure::{alternate, micros, process_resident_kib, resident_kib},
    BenchEnv, BenchError, CaseResult, FanoutBench, LoadBench, Sample, SuiteOptions,
};
use loader::Host;

const ROUNDTRIP: &str = "isolated_roundtrip";

/// A case that could not run for want of a worker program.
fn not_run(name: &str, unit: &str, target: &str) -> CaseResult {
    let mut case = CaseResult::new(name, unit, target);
    case.note =
        "not run: no worker program (SuiteOptions::worker_program; demo-app bench passes itself)"
            .to_owned();
    case
}

/// `bench-echo:echo` served by an isolated `bench-echo`, against the same bytes sent through a
/// raw pipe ping-pong with a second process (`cat`, which writes back what it reads).
pub struct IsolatedCommandBench {
    host: Host,
    sample: Sample,
    pipe: Option<PipeEcho>,
    _dir: WorkDir,
}

impl IsolatedCommandBench {
    /// A host serving `bench-echo` from a worker process started from `worker`.
    ///
    /// # Errors
    /// The library is missing, or the plugin does not load in its worker.
    pub fn new(env: &BenchEnv, worker: &Path) -> Result<Self, BenchError> {
        let dir = WorkDir::new("isolated-command")?;
        dir.add(&env.bench_lib("bench-echo")?)?;
        let host = host_in(dir.path(), Some(worker))?;
        load_checked(&host, ROUNDTRIP, 1)?;
        if host.worker_processes().len() != 1 {
            return Err(BenchError::check(
                ROUNDTRIP,
                "bench-echo does not run in a worker process",
            ));
        }
        Ok(IsolatedCommandBench {
            host,
            sample: Sample::new(0),
            pipe: PipeEcho::start().ok(),
            _dir: dir,
        })
    }

    /// Whether the raw pipe baseline could start (it needs `cat`).
    pub fn has_baseline(&self) -> bool {
        self.pipe.is_some()
    }

    /// One call through the host to the isolated plugin: encode, `execute`, decode.
    ///
    /// # Errors
    /// The call failed.
    pub fn ours(&self) -> Result<(), BenchError> {
        let args = Payload::encode(&self.sample).map_err(BenchError::call(ROUNDTRIP))?;
        let reply = self
            .host
            .execute("bench-echo:echo", args)
            .map_err(BenchError::call(ROUNDTRIP))?;
        let back: Sample = reply.decode().map_err(BenchError::call(ROUNDTRIP))?;
        black_box(back);
        Ok(())
    }

    /// The same bytes through the raw pipe pair: encode, write, read back, decode.
    ///
    /// # Errors
    /// The echo process is gone or there is no baseline.
    pub fn baseline(&mut self) -> Result<(), BenchError> {
        let args = Payload::encode(&self.sample).map_err(BenchError::call(ROUNDTRIP))?;
        let pipe = self
            .pipe
            .as_mut()
            .ok_or_else(|| BenchError::check(ROUNDTRIP, "no pipe baseline (cat is missing)"))?;
        let back = Payload {
            codec: args.codec,
            bytes: pipe.echo(&args.bytes)?.into(),
        };
        let back: Sample = back.decode().map_err(BenchError::call(ROUNDTRIP))?;
        black_box(back);
        Ok(())
    }
}

/// A second process that writes back every byte it reads (`cat`), over its stdin and stdout
/// pipes: the raw cost of one round trip between two processes.
struct PipeEcho {
    child: Child,
    input: ChildStdin,
    output: ChildStdout,
    buffer: Vec<u8>,
}

impl PipeEcho {
    fn start() -> std::io::Result<Self> {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("cat has no pipes"));
        };
        Ok(PipeEcho {
            child,
            input,
            output,
            buffer: Vec::new(),
        })
    }

    /// Writes `bytes` and reads as many back.
    fn echo(&mut self, bytes: &[u8]) -> Result<Vec<u8>, BenchError> {
        let broken = |e: std::io::Error| BenchError::check(ROUNDTRIP, format!("pipe echo: {e}"));
        self.input.write_all(bytes).map_err(broken)?;
        self.buffer.resize(bytes.len(), 0);
        self.output.read_exact(&mut self.buffer).map_err(broken)?;
        Ok(self.buffer.clone())
    }
}

impl Drop for PipeEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `isolated_roundtrip`: µs per `execute` of the 58-byte command to an isolated plugin, against
/// a raw ping-pong of the same bytes between two processes over pipes. Target: ratio ≤ 4.
///
/// # Errors
/// A library is missing or a call fails.
pub fn isolated_roundtrip(
    env: &BenchEnv,
    options: &SuiteOptions,
) -> Result<CaseResult, BenchError> {
    let target = "ratio ≤ 4";
    let Some(worker) = options.worker_program.as_deref() else {
        return Ok(not_run(ROUNDTRIP, "µs", target));
    };
    let mut bench = IsolatedCommandBench::new(env, worker)?;
    let calls = options.calls;
    let per_call = |started: Instant| micros(started.elapsed()) / calls.max(1) as f64;
    if !bench.has_baseline() {
        let mut case = CaseResult::new(ROUNDTRIP, "µs", target);
        let started = Instant::now();
        for _ in 0..calls {
            bench.ours()?;
        }
        case.ours = Some(per_call(started));
        case.note = "no raw baseline: `cat` could not be started".to_owned();
        return Ok(case);
    }
    let bench = std::cell::RefCell::new(&mut bench);
    let paired = alternate(
        options.rounds,
        || {
            let started = Instant::now();
            for _ in 0..calls {
                bench.borrow().ours()?;
            }
            Ok(per_call(started))
        },
        || {
            let started = Instant::now();
            for _ in 0..calls {
                bench.borrow_mut().baseline()?;
            }
            Ok(per_call(started))
        },
    )?;
    let (ours, baseline) = paired.medians();
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    let mut case = CaseResult::new(ROUNDTRIP, "µs", target).pair(ours, baseline);
    case.met = case.ratio.is_some_and(|r| r <= 4.0);
    case.note = format!(
        "58 B request; medians of {} blocks of {calls} calls; ours {olo:.1}–{ohi:.1}, raw pipe ping-pong through cat {blo:.1}–{bhi:.1}",
        options.rounds
    );
    Ok(case)
}

/// `isolated_fanout_4`: millions of events per second from one emitter to four isolated
/// subscribers, against the in-process raw crossbeam fan-out to four threads. Aim: ratio ≥ 0.25.
///
/// # Errors
/// A library is missing, an emit fails or events are lost.
pub fn isolated_fanout(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    const NAME: &str = "isolated_fanout_4";
    let target = "aim ratio ≥ 0.25";
    let Some(worker) = options.worker_program.as_deref() else {
        return Ok(not_run(NAME, "M events/s", target));
    };
    let bench = FanoutBench::isolated(env, 4, options.events, worker)?;
    let paired = super::cases::fanout_batches(&bench, options.event_rounds.div_ceil(4).max(3))?;
    let (ours, baseline) = paired.medians();
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    let mut case = CaseResult::new(NAME, "M events/s", target).pair(ours, baseline);
    case.met = case.ratio.is_some_and(|r| r >= 0.25);
    case.note = format!(
        "4 sinks in 4 worker processes; medians of {} batches of {} events + a count from every subscriber, none dropped; ours {olo:.3}–{ohi:.3}, in-process raw fan-out {blo:.2}–{bhi:.2}",
        paired.ours.len(),
        options.events
    );
    Ok(case)
}

/// `isolated_load_one`: µs from a file to an active isolated plugin in a running host (worker
/// start, handshake, the child's checked load, activation), against the same plugin loaded in
/// process. Reported.
///
/// # Errors
/// A library is missing or does not load.
pub fn isolated_load_one(env: &BenchEnv, options: &SuiteOptions) -> Result<CaseResult, BenchError> {
    const NAME: &str = "isolated_load_one";
    let Some(worker) = options.worker_program.as_deref() else {
        return Ok(not_run(NAME, "µs", "report"));
    };
    let isolated = LoadBench::isolated(env, worker)?;
    let in_process = LoadBench::new(env, 1)?;
    let loads = options.loads.div_ceil(2).max(3);
    let paired = alternate(
        loads,
        || isolated.ours().map(micros),
        || in_process.ours().map(micros),
    )?;
    let (ours, baseline) = paired.medians();
    let ((olo, ohi), (blo, bhi)) = paired.spread();
    let mut case = CaseResult::new(NAME, "µs", "report").pair(ours, baseline);
    case.note = format!(
        "{loads} loads each; isolated {olo:.0}–{ohi:.0}, in process (load_one's ours) {blo:.0}–{bhi:.0}"
    );
    Ok(case)
}

/// `isolated_idle_memory`: KiB of resident memory an idle isolated plugin costs, the child's
/// whole resident set plus what the host grew by, against the same plugin loaded in process.
/// Reported; `n/a` where `/proc` is missing.
///
/// # Errors
/// A library is missing or does not load.
pub fn isolated_idle_memory(
    env: &BenchEnv,
    options: &SuiteOptions,
) -> Result<CaseResult, BenchError> {
    const NAME: &str = "isolated_idle_memory";
    let Some(worker) = options.worker_program.as_deref() else {
        return Ok(not_run(NAME, "KiB", "report"));
    };
    let settle = || std::thread::sleep(Duration::from_millis(200));
    let grown = |make: &dyn Fn() -> Result<Host, BenchError>| -> Result<_, BenchError> {
        let before = resident_kib();
        let host = make()?;
        settle();
        let child = host
            .worker_processes()
            .first()
            .and_then(|&pid| process_resident_kib(pid));
        let after = resident_kib();
        Ok((
            before.zip(after).map(|(b, a)| a.saturating_sub(b)),
            child,
            host,
        ))
    };
    let load = |worker: Option<&Path>| -> Result<Host, BenchError> {
        let dir = WorkDir::new("isolated-memory")?;
        dir.add(&env.bench_lib("bench-sink-a")?)?;
        let host = host_in(dir.path(), worker)?;
        load_checked(&host, NAME, 1)?;
        // The library is copied into the host's private folder; the scratch folder can go.
        drop(dir);
        Ok(host)
    };
    // One untimed round of each first, so that both see warmed allocators and mapped code.
    drop(load(Some(worker))?);
    drop(load(None)?);
    let (parent, child, isolated_host) = grown(&|| load(Some(worker)))?;
    let (in_process, _, in_process_host) = grown(&|| load(None))?;
    let mut case = CaseResult::new(NAME, "KiB", "report");
    match (parent, child, in_process) {
        (Some(parent), Some(child), Some(in_process)) => {
            case = case.pair((parent + child) as f64, in_process as f64);
            case.note = format!(
                "bench-sink-a, idle: the worker process {child} KiB resident + the host {parent} KiB; in process the host grows by {in_process} KiB"
            );
        }
        _ => case.note = "n/a: no /proc on this platform".to_owned(),
    }
    drop(isolated_host);
    drop(in_process_host);
    let _ = options;
    Ok(case)
}
