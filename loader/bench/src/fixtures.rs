//! Prepared hosts and their raw baselines, one operation per call.

use std::{
    cell::Cell,
    hint::black_box,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use abi_stable::{library::lib_header_from_path, std_types::RStr};
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use plugin_api::{Event, Payload, PluginError, PluginInstanceBox, PluginModRef, PluginResult};

use super::{measure::micros, BenchEnv, BenchError, Sample};
use loader::{library_file_name, FileChange, Host};

/// A scratch folder, removed when dropped.
pub(crate) struct WorkDir {
    path: PathBuf,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl WorkDir {
    pub fn new(tag: &str) -> Result<Self, BenchError> {
        let path = std::env::temp_dir().join(format!(
            "native-plugins-bench-{}-{}-{tag}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(BenchError::io(&path))?;
        // The loader refuses plugins in world-writable folders; do not depend on the umask.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(BenchError::io(&path))?;
        }
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `file` in under its own name.
    pub fn add(&self, file: &Path) -> Result<PathBuf, BenchError> {
        let to = self.path.join(file.file_name().unwrap_or_default());
        std::fs::copy(file, &to).map_err(BenchError::io(file))?;
        Ok(to)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The name `bench-sink-a` declares, as stored in its library.
const SINK_NAME: &[u8] = b"bench-sink-a";

/// Writes `count` copies of `bench-sink-a` into `dir`, copy `i` renamed to plugin
/// `bench-s{start + i:05}` (the same length as `bench-sink-a`, so nothing else in the file
/// moves). Returns their paths.
pub(crate) fn fleet(
    env: &BenchEnv,
    dir: &Path,
    start: usize,
    count: usize,
) -> Result<Vec<PathBuf>, BenchError> {
    let source = env.bench_lib("bench-sink-a")?;
    let bytes = std::fs::read(&source).map_err(BenchError::io(&source))?;
    let at: Vec<usize> = bytes
        .windows(SINK_NAME.len())
        .enumerate()
        .filter(|(_, w)| *w == SINK_NAME)
        .map(|(i, _)| i)
        .collect();
    if at.is_empty() {
        return Err(BenchError::check(
            "fleet",
            format!(
                "{} does not hold its plugin name as plain bytes: cannot make renamed copies",
                source.display()
            ),
        ));
    }
    let mut files = Vec::with_capacity(count);
    for i in start..start + count {
        let name = format!("bench-s{i:05}");
        debug_assert_eq!(name.len(), SINK_NAME.len());
        let mut copy = bytes.clone();
        for &offset in &at {
            copy[offset..offset + SINK_NAME.len()].copy_from_slice(name.as_bytes());
        }
        let path = dir.join(library_file_name(&name));
        std::fs::write(&path, &copy).map_err(BenchError::io(&path))?;
        files.push(path);
    }
    Ok(files)
}

/// `n` subscriber libraries in `dir`: the four sink crates first, renamed copies beyond four.
pub(crate) fn sinks(env: &BenchEnv, dir: &WorkDir, n: usize) -> Result<(), BenchError> {
    for name in [
        "bench-sink-a",
        "bench-sink-b",
        "bench-sink-c",
        "bench-sink-d",
    ]
    .iter()
    .take(n)
    {
        dir.add(&env.bench_lib(name)?)?;
    }
    if n > 4 {
        fleet(env, dir.path(), 0, n - 4)?;
    }
    Ok(())
}

/// A host for `dir` with the default configuration and in-memory storage.
pub(crate) fn host_for(dir: &Path) -> Result<Host, BenchError> {
    host_in(dir, None)
}

/// As [`host_for`]; with a worker program, every plugin runs isolated in a child process
/// started from it.
pub(crate) fn host_in(dir: &Path, worker: Option<&Path>) -> Result<Host, BenchError> {
    let builder = Host::builder().plugins_dir(dir).in_memory_storage();
    let builder = match worker {
        Some(program) => builder
            .worker_program(program)
            .isolation(loader::Isolation::Process),
        None => builder,
    };
    Ok(builder.build()?)
}

/// Loads the host's folder and checks that `expected` plugins became active.
pub(crate) fn load_checked(
    host: &Host,
    case: &'static str,
    expected: usize,
) -> Result<(), BenchError> {
    let report = host.load_dir().map_err(BenchError::load(case))?;
    let active = report.activated().len();
    if let Some(source) = report.entries.into_iter().find_map(|e| e.error) {
        return Err(BenchError::load(case)(source));
    }
    if active != expected {
        return Err(BenchError::check(
            case,
            format!("{active} plugins active, expected {expected}"),
        ));
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---- command round trip ---------------------------------------------------------------------

const COMMAND: &str = "command_roundtrip";

/// `bench-echo:echo` through the host, against a crossbeam request/response pair of threads
/// doing the same decode and encode.
pub struct CommandBench {
    host: Host,
    sample: Sample,
    server: EchoServer,
    _dir: WorkDir,
}

impl CommandBench {
    /// A host serving `bench-echo`, with `extra` bytes of data in the request.
    ///
    /// # Errors
    /// The library is missing or does not load.
    pub fn new(env: &BenchEnv, extra: usize) -> Result<Self, BenchError> {
        Self::with_neighbours(env, extra, 0)
    }

    /// As [`CommandBench::new`], with `idle` more plugins loaded (renamed sink copies) that take
    /// no part in the calls: how the command path grows with the number of plugins.
    ///
    /// # Errors
    /// As [`CommandBench::new`].
    pub fn with_neighbours(env: &BenchEnv, extra: usize, idle: usize) -> Result<Self, BenchError> {
        let dir = WorkDir::new("command")?;
        dir.add(&env.bench_lib("bench-echo")?)?;
        fleet(env, dir.path(), 0, idle)?;
        let host = host_for(dir.path())?;
        load_checked(&host, COMMAND, 1 + idle)?;
        Ok(CommandBench {
            host,
            sample: Sample::new(extra),
            server: EchoServer::start()?,
            _dir: dir,
        })
    }

    /// The host (to switch the recorder, read metrics).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Encoded size of the request.
    pub fn payload_bytes(&self) -> usize {
        Payload::encode(&self.sample).map_or(0, |p| p.len())
    }

    /// One call through the host: encode, `execute`, decode the answer.
    ///
    /// # Errors
    /// The call failed.
    pub fn ours(&self) -> Result<(), BenchError> {
        let args = Payload::encode(&self.sample).map_err(BenchError::call(COMMAND))?;
        let reply = self
            .host
            .execute("bench-echo:echo", args)
            .map_err(BenchError::call(COMMAND))?;
        let back: Sample = reply.decode().map_err(BenchError::call(COMMAND))?;
        black_box(back);
        Ok(())
    }

    /// The same call over a raw crossbeam request/response pair.
    ///
    /// # Errors
    /// The server thread is gone.
    pub fn baseline(&self) -> Result<(), BenchError> {
        let args = Payload::encode(&self.sample).map_err(BenchError::call(COMMAND))?;
        let reply = self.server.call(args)?;
        let back: Sample = reply.decode().map_err(BenchError::call(COMMAND))?;
        black_box(back);
        Ok(())
    }

    /// `calls` calls through the host; µs per call.
    pub(crate) fn ours_block(&self, calls: usize) -> Result<f64, BenchError> {
        let started = Instant::now();
        for _ in 0..calls {
            self.ours()?;
        }
        Ok(micros(started.elapsed()) / calls.max(1) as f64)
    }

    /// `calls` baseline calls; µs per call.
    pub(crate) fn baseline_block(&self, calls: usize) -> Result<f64, BenchError> {
        let started = Instant::now();
        for _ in 0..calls {
            self.baseline()?;
        }
        Ok(micros(started.elapsed()) / calls.max(1) as f64)
    }
}

/// The raw baseline: a thread that decodes a [`Sample`] and answers it re-encoded, fed by a
/// bounded request channel, answering on one long-lived bounded(1) channel.
struct EchoServer {
    requests: Option<Sender<Payload>>,
    replies: Receiver<PluginResult<Payload>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> Result<Self, BenchError> {
        let (requests, inbox) = bounded::<Payload>(256);
        let (outbox, replies) = bounded::<PluginResult<Payload>>(1);
        let thread = std::thread::Builder::new()
            .name("bench-echo-baseline".into())
            .spawn(move || {
                for args in inbox {
                    let reply = args
                        .decode::<Sample>()
                        .and_then(|sample| args.reply_with(&sample));
                    if outbox.send(reply).is_err() {
                        return;
                    }
                }
            })
            .map_err(BenchError::io(Path::new("<thread>")))?;
        Ok(EchoServer {
            requests: Some(requests),
            replies,
            thread: Some(thread),
        })
    }

    fn call(&self, args: Payload) -> Result<Payload, BenchError> {
        let gone = || BenchError::check(COMMAND, "the baseline server thread stopped");
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(args)
            .map_err(|_| gone())?;
        self.replies
            .recv()
            .map_err(|_| gone())?
            .map_err(BenchError::call(COMMAND))
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- direct boundary call -------------------------------------------------------------------

const DIRECT: &str = "direct_call";

/// `bench-echo`'s `handle_command` called through its abi_stable vtable on the caller's thread
/// (no dispatcher), against the same handler compiled into this crate and called directly.
///
/// The host never calls a plugin this way (every call goes through the plugin's dispatcher
/// thread); this isolates what the boundary itself costs.
pub struct DirectCallBench {
    instance: PluginInstanceBox,
    local: LocalEcho,
    args: Payload,
    _host: Host,
    _dir: WorkDir,
}

impl DirectCallBench {
    /// Loads `bench-echo` without activating it in a host, and creates one instance.
    ///
    /// # Errors
    /// The library is missing or does not load, or the instance fails to activate.
    pub fn new(env: &BenchEnv) -> Result<Self, BenchError> {
        let dir = WorkDir::new("direct")?;
        let host = Host::builder().in_memory_storage().build()?;
        let lib = loader::load_library(
            &env.bench_lib("bench-echo")?,
            &dir.path().join("shadow"),
            None,
        )
        .map_err(BenchError::load(DIRECT))?;
        let context = host.standalone_context(&lib.manifest.name);
        let module = lib
            .module
            .ok_or_else(|| BenchError::check(DIRECT, "load_library returned no module"))?;
        let mut instance = (module.instantiate())(context)
            .into_result()
            .map_err(BenchError::call(DIRECT))?;
        instance
            .activate()
            .into_result()
            .map_err(BenchError::call(DIRECT))?;
        Ok(DirectCallBench {
            instance,
            local: LocalEcho::default(),
            args: Payload::encode(&Sample::new(0)).map_err(BenchError::call(DIRECT))?,
            _host: host,
            _dir: dir,
        })
    }

    /// Command `command` (`echo` or `noop`) through the vtable.
    ///
    /// # Errors
    /// The handler's error.
    pub fn ours(&mut self, command: &str) -> PluginResult<Payload> {
        self.instance
            .handle_command(RStr::from_str(command), &self.args)
            .into_result()
    }

    /// The same handler as a plain (not inlined) Rust call.
    ///
    /// # Errors
    /// The handler's error.
    pub fn baseline(&mut self, command: &str) -> PluginResult<Payload> {
        self.local.handle_command(command, &self.args)
    }

    /// `calls` calls of `command` each way, ns per call: (vtable, plain).
    pub(crate) fn blocks(&mut self, command: &str, calls: usize) -> Result<(f64, f64), BenchError> {
        let started = Instant::now();
        for _ in 0..calls {
            black_box(
                self.ours(black_box(command))
                    .map_err(BenchError::call(DIRECT))?,
            );
        }
        let ours = started.elapsed();
        let started = Instant::now();
        for _ in 0..calls {
            black_box(
                self.baseline(black_box(command))
                    .map_err(BenchError::call(DIRECT))?,
            );
        }
        let plain = started.elapsed();
        let n = calls.max(1) as f64;
        Ok((micros(ours) * 1e3 / n, micros(plain) * 1e3 / n))
    }
}

impl Drop for DirectCallBench {
    fn drop(&mut self) {
        let _ = self.instance.deactivate();
    }
}

/// `bench-echo`'s handler, compiled into the host.
#[derive(Default)]
struct LocalEcho {
    served: u64,
}

impl LocalEcho {
    #[inline(never)]
    fn handle_command(&mut self, command: &str, args: &Payload) -> PluginResult<Payload> {
        self.served += 1;
        match command {
            "echo" => args.reply_with(&args.decode::<Sample>()?),
            "noop" => Ok(Payload::empty()),
            other => Err(PluginError::not_found(format!(
                "command not found: bench-echo:{other}"
            ))),
        }
    }
}

// ---- event fan-out --------------------------------------------------------------------------

const FANOUT: &str = "event_fanout";

/// `bench:tick` events emitted by the host to `n` sink plugins, against the same events sent
/// as `Arc<Event>` over crossbeam channels to `n` counting threads.
///
/// One operation is a batch: emit the events, then ask every subscriber for its count
/// (`emit_and_collect` of `bench:count`, which each sink answers after everything emitted
/// before it) and check that nothing was lost. The batch stays below the event queue bound, so
/// nothing may be dropped.
pub struct FanoutBench {
    host: Host,
    subscribers: usize,
    events: usize,
    data: Payload,
    emitted: Cell<u64>,
    baseline: FanoutBaseline,
    _dir: WorkDir,
}

impl FanoutBench {
    /// `subscribers` sinks, batches of `events` events carrying a [`Sample`] with `extra` bytes.
    ///
    /// # Errors
    /// A library is missing or does not load; `events` does not fit the event queue.
    pub fn new(
        env: &BenchEnv,
        subscribers: usize,
        events: usize,
        extra: usize,
    ) -> Result<Self, BenchError> {
        Self::in_mode(env, subscribers, events, extra, None)
    }

    /// As [`FanoutBench::new`], with every subscriber isolated in a worker process started
    /// from `worker` (the baseline stays the in-process raw fan-out).
    ///
    /// # Errors
    /// As [`FanoutBench::new`]; also when a worker cannot start.
    pub fn isolated(
        env: &BenchEnv,
        subscribers: usize,
        events: usize,
        worker: &Path,
    ) -> Result<Self, BenchError> {
        Self::in_mode(env, subscribers, events, 0, Some(worker))
    }

    fn in_mode(
        env: &BenchEnv,
        subscribers: usize,
        events: usize,
        extra: usize,
        worker: Option<&Path>,
    ) -> Result<Self, BenchError> {
        let dir = WorkDir::new("fanout")?;
        sinks(env, &dir, subscribers)?;
        let host = host_in(dir.path(), worker)?;
        let capacity = host.config().event_queue;
        if events >= capacity {
            return Err(BenchError::check(
                FANOUT,
                format!("a batch of {events} events does not fit the event queue of {capacity}"),
            ));
        }
        load_checked(&host, FANOUT, subscribers)?;
        let data = Payload::encode(&Sample::new(extra)).map_err(BenchError::call(FANOUT))?;
        Ok(FanoutBench {
            host,
            subscribers,
            events,
            baseline: FanoutBaseline::start(subscribers, capacity, data.clone())?,
            data,
            emitted: Cell::new(0),
            _dir: dir,
        })
    }

    /// The host (to switch the recorder).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Events per batch.
    pub fn events(&self) -> usize {
        self.events
    }

    /// One batch through the host; its duration.
    ///
    /// # Errors
    /// An emit failed, or a subscriber counted fewer events than were emitted.
    pub fn ours(&self) -> Result<Duration, BenchError> {
        let started = Instant::now();
        for _ in 0..self.events {
            self.host
                .emit("bench:tick", self.data.clone())
                .map_err(BenchError::call(FANOUT))?;
        }
        let answers = self
            .host
            .emit_and_collect("bench:count", Payload::empty(), None)
            .map_err(BenchError::call(FANOUT))?;
        let took = started.elapsed();
        let expected = self.emitted.get() + self.events as u64;
        self.emitted.set(expected);
        if answers.len() != self.subscribers {
            return Err(BenchError::check(
                FANOUT,
                format!(
                    "{} subscribers answered, expected {}",
                    answers.len(),
                    self.subscribers
                ),
            ));
        }
        for (plugin, answer) in answers {
            let count: u64 = answer
                .and_then(|p| p.decode())
                .map_err(BenchError::call(FANOUT))?;
            if count != expected {
                return Err(BenchError::check(
                    FANOUT,
                    format!("{plugin} counted {count} events of {expected}: events were lost"),
                ));
            }
        }
        Ok(took)
    }

    /// One batch through the raw fan-out; its duration.
    ///
    /// # Errors
    /// A counting thread is gone or counted wrong.
    pub fn baseline(&self) -> Result<Duration, BenchError> {
        self.baseline.batch(self.events)
    }
}

enum Fanned {
    Event(Arc<Event>),
    Count(Sender<u64>),
}

struct FanoutBaseline {
    senders: Vec<Sender<Fanned>>,
    threads: Vec<JoinHandle<()>>,
    data: Payload,
    next_id: Cell<u64>,
    emitted: Cell<u64>,
}

impl FanoutBaseline {
    fn start(n: usize, capacity: usize, data: Payload) -> Result<Self, BenchError> {
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = bounded::<Fanned>(capacity);
            let thread = std::thread::Builder::new()
                .name(format!("bench-fanout-{i}"))
                .spawn(move || {
                    let mut count = 0u64;
                    for message in rx {
                        match message {
                            Fanned::Event(event) => {
                                black_box(&event);
                                count += 1;
                            }
                            Fanned::Count(reply) => {
                                let _ = reply.send(count);
                            }
                        }
                    }
                })
                .map_err(BenchError::io(Path::new("<thread>")))?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(FanoutBaseline {
            senders,
            threads,
            data,
            next_id: Cell::new(1),
            emitted: Cell::new(0),
        })
    }

    fn batch(&self, events: usize) -> Result<Duration, BenchError> {
        let gone = || BenchError::check(FANOUT, "a baseline thread stopped");
        let started = Instant::now();
        for _ in 0..events {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            // The same event the host builds: id, type, source, timestamp, a copy of the data.
            let event = Arc::new(Event {
                id,
                parent: 0,
                event_type: "bench:tick".into(),
                source: "host".into(),
                timestamp_ms: now_ms(),
                data: self.data.clone(),
            });
            for tx in &self.senders {
                tx.send(Fanned::Event(event.clone())).map_err(|_| gone())?;
            }
        }
        let (reply, counts) = bounded(self.senders.len().max(1));
        for tx in &self.senders {
            tx.send(Fanned::Count(reply.clone())).map_err(|_| gone())?;
        }
        let mut answers = Vec::with_capacity(self.senders.len());
        for _ in &self.senders {
            answers.push(counts.recv().map_err(|_| gone())?);
        }
        let took = started.elapsed();
        let expected = self.emitted.get() + events as u64;
        self.emitted.set(expected);
        if answers.iter().any(|&c| c != expected) {
            return Err(BenchError::check(
                FANOUT,
                format!("baseline counts {answers:?}, expected {expected}"),
            ));
        }
        Ok(took)
    }
}

impl Drop for FanoutBaseline {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---- loading --------------------------------------------------------------------------------

const LOAD: &str = "load";

/// Loading plugins from files to active, against raw loads of fresh copies
/// (copy + `lib_header_from_path` + `init_root_module`).
///
/// Every load maps a new image that stays mapped (libraries are never unloaded): thousands of
/// loads cost memory and mappings (see [`mapped_regions`](super::mapped_regions)).
pub struct LoadBench {
    /// For a single plugin: the running host it is loaded into and deactivated from.
    host: Option<Host>,
    plugins: WorkDir,
    raw: WorkDir,
    files: Vec<PathBuf>,
    copies: Cell<u64>,
}

impl LoadBench {
    /// A folder of `n` plugins: `bench-sink-a` itself for one, renamed copies for more.
    ///
    /// # Errors
    /// The library is missing or cannot be copied.
    pub fn new(env: &BenchEnv, n: usize) -> Result<Self, BenchError> {
        Self::in_mode(env, n, None)
    }

    /// One plugin, loaded isolated into a running host: a worker process started from
    /// `worker`, the handshake, the child's own load, and activation.
    ///
    /// # Errors
    /// As [`LoadBench::new`].
    pub fn isolated(env: &BenchEnv, worker: &Path) -> Result<Self, BenchError> {
        Self::in_mode(env, 1, Some(worker))
    }

    fn in_mode(env: &BenchEnv, n: usize, worker: Option<&Path>) -> Result<Self, BenchError> {
        let plugins = WorkDir::new("load")?;
        let files = if n == 1 {
            vec![plugins.add(&env.bench_lib("bench-sink-a")?)?]
        } else {
            fleet(env, plugins.path(), 0, n)?
        };
        let host = if n == 1 {
            Some(host_in(plugins.path(), worker)?)
        } else {
            None
        };
        Ok(LoadBench {
            host,
            plugins,
            raw: WorkDir::new("raw")?,
            files,
            copies: Cell::new(0),
        })
    }

    /// Plugins per load.
    pub fn plugins(&self) -> usize {
        self.files.len()
    }

    /// One load. A single plugin: `load_files` into a running host, then (untimed) deactivated
    /// again. A folder: `load_dir` into a fresh host, created and dropped untimed.
    ///
    /// # Errors
    /// A plugin did not become active.
    pub fn ours(&self) -> Result<Duration, BenchError> {
        if let Some(host) = &self.host {
            let started = Instant::now();
            let report = host.load_files(&self.files);
            let took = started.elapsed();
            if let Some(source) = report.entries.into_iter().find_map(|e| e.error) {
                return Err(BenchError::load(LOAD)(source));
            }
            host.deactivate("bench-sink-a")
                .map_err(BenchError::load(LOAD))?;
            return Ok(took);
        }
        let host = host_for(self.plugins.path())?;
        let started = Instant::now();
        let report = host.load_dir().map_err(BenchError::load(LOAD))?;
        let took = started.elapsed();
        let active = report.activated().len();
        if let Some(source) = report.entries.into_iter().find_map(|e| e.error) {
            return Err(BenchError::load(LOAD)(source));
        }
        if active != self.files.len() {
            return Err(BenchError::check(
                LOAD,
                format!("{active} of {} plugins active", self.files.len()),
            ));
        }
        drop(host);
        Ok(took)
    }

    /// The raw loads of the same files: each copied to a fresh path, opened and checked by
    /// abi_stable, the copy unlinked.
    ///
    /// # Errors
    /// A copy or a load failed.
    pub fn raw(&self) -> Result<Duration, BenchError> {
        let started = Instant::now();
        for file in &self.files {
            let n = self.copies.get();
            self.copies.set(n + 1);
            let copy = self
                .raw
                .path()
                .join(format!("raw-{n}{}", std::env::consts::DLL_SUFFIX));
            std::fs::copy(file, &copy).map_err(BenchError::io(file))?;
            let module = lib_header_from_path(&copy)
                .and_then(|header| header.init_root_module::<PluginModRef>())
                .map_err(|e| {
                    BenchError::check(LOAD, format!("raw load of {}: {e}", file.display()))
                })?;
            black_box(module);
            let _ = std::fs::remove_file(&copy);
        }
        Ok(started.elapsed())
    }
}

// ---- hot reload -----------------------------------------------------------------------------

const RELOAD: &str = "reload_swap";

/// Hot reload of `bench-echo` between its two builds (0.1.0 and 0.2.0), optionally under a
/// steady stream of commands whose failures are counted.
pub struct ReloadBench {
    // Dropped first: the traffic thread holds a clone of the host.
    traffic: Option<Traffic>,
    host: Host,
    file: PathBuf,
    builds: [PathBuf; 2],
    next: Cell<usize>,
    dir: WorkDir,
}

impl ReloadBench {
    /// `bench-echo` 0.1.0 loaded from a plugins folder; with `traffic`, a thread calling
    /// `bench-echo:echo` every ~100 µs.
    ///
    /// # Errors
    /// A library is missing or does not load.
    pub fn new(env: &BenchEnv, traffic: bool) -> Result<Self, BenchError> {
        let dir = WorkDir::new("reload")?;
        let first = env.bench_lib("bench-echo")?;
        let file = dir.add(&first)?;
        let host = host_for(dir.path())?;
        load_checked(&host, RELOAD, 1)?;
        let traffic = if traffic {
            Some(Traffic::start(host.clone())?)
        } else {
            None
        };
        Ok(ReloadBench {
            traffic,
            host,
            file,
            builds: [first, env.bench_lib("bench-echo-next")?],
            next: Cell::new(1),
            dir,
        })
    }

    /// Replaces the file by the other build (an atomic rename, untimed), then times
    /// [`Host::apply_file`] until a command answers with the new version.
    ///
    /// # Errors
    /// The reload was refused, or the new version does not answer.
    pub fn swap(&self) -> Result<Duration, BenchError> {
        let next = self.next.get();
        let incoming = self.dir.path().join(".incoming");
        std::fs::copy(&self.builds[next], &incoming).map_err(BenchError::io(&incoming))?;
        std::fs::rename(&incoming, &self.file).map_err(BenchError::io(&self.file))?;
        let started = Instant::now();
        let change = self
            .host
            .apply_file(&self.file)
            .map_err(BenchError::load(RELOAD))?;
        let FileChange::Reloaded { new_version, .. } = change else {
            return Err(BenchError::check(
                RELOAD,
                format!("expected a reload, got {change:?}"),
            ));
        };
        for _ in 0..10_000 {
            let serving: String = self
                .host
                .execute("bench-echo:version", Payload::empty())
                .and_then(|p| p.decode())
                .map_err(BenchError::call(RELOAD))?;
            if serving == new_version {
                let took = started.elapsed();
                self.next.set(1 - next);
                return Ok(took);
            }
        }
        Err(BenchError::check(
            RELOAD,
            format!("version {new_version} never answered after the reload"),
        ))
    }

    /// Commands the traffic thread made so far, how many failed, and the last failure.
    pub fn traffic(&self) -> (u64, u64, Option<String>) {
        self.traffic.as_ref().map_or((0, 0, None), |t| {
            (
                t.calls.load(Ordering::Relaxed),
                t.failures.load(Ordering::Relaxed),
                t.last_error.lock().clone(),
            )
        })
    }
}

/// A thread calling `bench-echo:echo` until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(host: Host) -> Result<Self, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(Mutex::new(None));
        let args = Payload::encode(&Sample::new(0)).map_err(BenchError::call(RELOAD))?;
        let thread = {
            let (stop, calls, failures, last_error) = (
                stop.clone(),
                calls.clone(),
                failures.clone(),
                last_error.clone(),
            );
            std::thread::Builder::new()
                .name("bench-reload-traffic".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let answer = host
                            .execute("bench-echo:echo", args.clone())
                            .and_then(|p| p.decode::<Sample>());
                        calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = answer {
                            failures.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock() = Some(e.to_string());
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    }
                })
                .map_err(BenchError::io(Path::new("<thread>")))?
        };
        Ok(Traffic {
            stop,
            calls,
            failures,
            last_error,
            thread: Some(thread),
        })
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
