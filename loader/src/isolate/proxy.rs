//! The child's side of the plugin's context: a [`HostContext`] whose methods send a
//! [`HostRequest`] to the host and wait for its [`HostReply`].
//!
//! Plugin threads may call the context at the same time: every request gets an id, and
//! whoever reads the worker's input hands each reply to the thread waiting for that id
//! ([`Link::settle`]); a request made by the call running reads the input itself while it
//! waits ([`Input::reply_for`]).
//! The plugin's name, its configuration and the host's log level are known from the start
//! frame and answered here.

use std::{
    cell::Cell,
    collections::HashMap,
    io::{BufWriter, Write},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use plugin_api::{
    BatchOp, CallStamp, CollectedReply, Entry, ErrorKind, HostContext, Payload, PluginError,
    StorageScope,
};

use super::{
    input::Input,
    wire::{self, HostReply, HostRequest, ToHost},
};

thread_local! {
    /// Whether this thread is running a call of the host right now.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the thread that serves the host's current call: requests it makes are served by
/// the host's calling thread.
pub(crate) fn as_call<T>(f: impl FnOnce() -> T) -> T {
    IN_CALL.with(|c| c.set(true));
    let out = f();
    IN_CALL.with(|c| c.set(false));
    out
}

type Waiting = Sender<Result<HostReply, PluginError>>;

/// How long an answer may wait in the worker's buffer for the answers after it (see
/// [`Link::send_later`]).
pub(crate) const ANSWER_DELAY: Duration = Duration::from_millis(2);

/// The child's connection to the host: the frame writer and the requests waiting for replies.
pub(crate) struct Link {
    out: Mutex<Output>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    next: AtomicU64,
    /// The worker's input, once the handshake is done.
    input: OnceLock<Arc<Input>>,
}

/// The frame writer, and when what it holds unwritten was first put there.
struct Output {
    out: BufWriter<Box<dyn Write + Send>>,
    held_since: Option<Instant>,
}

impl Link {
    /// A link that writes frames to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Arc<Link> {
        Arc::new(Link {
            out: Mutex::new(Output {
                out: BufWriter::with_capacity(64 * 1024, out),
                held_since: None,
            }),
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            input: OnceLock::new(),
        })
    }

    /// Gives the link the worker's input, from which the call running reads its replies.
    pub fn attach(&self, input: Arc<Input>) {
        let _ = self.input.set(input);
    }

    /// Writes one frame to the host.
    ///
    /// # Errors
    /// The host's end of the pipe is closed.
    pub fn send(&self, frame: &ToHost) -> std::io::Result<()> {
        self.send_raw(frame)
    }

    /// Writes a frame of another kind (the hello).
    ///
    /// # Errors
    /// The host's end of the pipe is closed.
    pub fn send_raw<T: serde::Serialize>(&self, frame: &T) -> std::io::Result<()> {
        wire::with_frame(frame, |bytes| {
            let mut out = self.out.lock();
            out.out.write_all(bytes)?;
            out.held_since = None;
            out.out.flush()
        })
    }

    /// Writes one frame, leaving it in the buffer for a while (at most about [`ANSWER_DELAY`]:
    /// the next frame written after that, the executor's next wait ([`Link::flush`]) or, if
    /// the next handler runs long, the standby writes it): the answers to a run of events go
    /// out together, in one write the host reads at once.
    ///
    /// # Errors
    /// The host's end of the pipe is closed.
    pub fn send_later(&self, frame: &ToHost) -> std::io::Result<()> {
        wire::with_frame(frame, |bytes| {
            let mut out = self.out.lock();
            out.out.write_all(bytes)?;
            let since = *out.held_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= ANSWER_DELAY {
                out.held_since = None;
                out.out.flush()?;
            }
            Ok(())
        })
    }

    /// Whether the buffer holds unwritten frames.
    #[cfg_attr(not(unix), allow(dead_code))] // Only the Unix standby writes them out late.
    pub fn holds(&self) -> bool {
        self.out.lock().held_since.is_some()
    }

    /// How long the buffer has held unwritten frames, if it holds any.
    #[cfg_attr(not(unix), allow(dead_code))] // Only the Unix standby writes them out late.
    pub fn held_for(&self) -> Option<Duration> {
        self.out.lock().held_since.map(|since| since.elapsed())
    }

    /// Writes what the buffer holds.
    ///
    /// # Errors
    /// The host's end of the pipe is closed.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut out = self.out.lock();
        if out.held_since.take().is_some() {
            out.out.flush()?;
        }
        Ok(())
    }

    /// Hands the host's reply to request `id` to the thread waiting for it.
    pub fn settle(&self, id: u64, reply: Result<HostReply, PluginError>) {
        if let Some(waiting) = self.waiting.lock().remove(&id) {
            let _ = waiting.send(reply);
        }
    }

    /// Forgets request `id`, whose reply its own thread read.
    #[cfg(unix)]
    pub fn forget(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// Sends `request` and waits for the reply (`log` asks for none).
    fn ask(&self, request: HostRequest) -> Result<HostReply, PluginError> {
        let in_call = IN_CALL.with(Cell::get);
        if let HostRequest::Log { .. } | HostRequest::StopTimer(_) = request {
            let _ = self.send(&ToHost::Request {
                id: 0,
                in_call,
                request,
            });
            return Ok(HostReply::Unit);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        self.waiting.lock().insert(id, tx);
        if let Err(e) = self.send(&ToHost::Request {
            id,
            in_call,
            request,
        }) {
            self.waiting.lock().remove(&id);
            return Err(gone(&e.to_string()));
        }
        let reply = match (in_call, self.input.get()) {
            (true, Some(input)) => input.reply_for(id, &rx),
            _ => rx.recv().ok(),
        };
        reply.unwrap_or_else(|| Err(gone("no reply")))
    }
}

fn gone(why: &str) -> PluginError {
    PluginError::new(ErrorKind::Cancelled, format!("the host is gone ({why})"))
}

/// The context an isolated plugin's instance gets in the child.
pub(crate) struct ProxyContext {
    pub link: Arc<Link>,
    pub name: String,
    pub config: Payload,
    pub log_level: u8,
}

impl ProxyContext {
    /// Asks the host and shapes the reply; never unwinds into the plugin.
    fn ask<T>(
        &self,
        request: HostRequest,
        shape: impl FnOnce(HostReply) -> Result<T, HostReply>,
    ) -> RResult<T, PluginError> {
        let asked = catch_unwind(AssertUnwindSafe(|| {
            self.link.ask(request).and_then(|reply| {
                // The reply is described only when it is not of the kind asked for (a
                // description of every reply would format every payload).
                shape(reply).map_err(|other| {
                    PluginError::failed(format!("internal error: unexpected host reply {other:?}"))
                })
            })
        }));
        match asked {
            Ok(r) => r.into(),
            Err(_) => RResult::RErr(PluginError::failed(
                "the worker failed while asking the host",
            )),
        }
    }
}

fn unit(r: HostReply) -> Result<(), HostReply> {
    match r {
        HostReply::Unit => Ok(()),
        other => Err(other),
    }
}

fn payload(r: HostReply) -> Result<Payload, HostReply> {
    match r {
        HostReply::Payload(p) => Ok(p),
        other => Err(other),
    }
}

impl HostContext for ProxyContext {
    fn plugin_name(&self) -> RString {
        RString::from(self.name.as_str())
    }

    fn emit(&self, event_type: RStr<'_>, data: Payload) -> RResult<u64, PluginError> {
        let request = HostRequest::Emit {
            event_type: event_type.into(),
            data,
        };
        self.ask(request, |r| match r {
            HostReply::Id(id) => Ok(id),
            other => Err(other),
        })
    }

    fn emit_and_collect(
        &self,
        event_type: RStr<'_>,
        data: Payload,
        timeout_ms: u64,
    ) -> RResult<RVec<CollectedReply>, PluginError> {
        let request = HostRequest::EmitAndCollect {
            event_type: event_type.into(),
            data,
            timeout_ms,
        };
        self.ask(request, |r| match r {
            HostReply::Collected(v) => Ok(v
                .into_iter()
                .map(|(plugin, result)| CollectedReply {
                    plugin: plugin.into(),
                    result: result.into(),
                })
                .collect()),
            other => Err(other),
        })
    }

    fn subscribe(&self, pattern: RStr<'_>) -> RResult<(), PluginError> {
        self.ask(HostRequest::Subscribe(pattern.into()), unit)
    }

    fn unsubscribe(&self, pattern: RStr<'_>) -> RResult<(), PluginError> {
        self.ask(HostRequest::Unsubscribe(pattern.into()), unit)
    }

    fn execute(
        &self,
        command: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        let request = HostRequest::Execute {
            command: command.into(),
            args,
            timeout_ms,
        };
        self.ask(request, payload)
    }

    fn send_to(&self, plugin: RStr<'_>, message: Payload) -> RResult<(), PluginError> {
        let request = HostRequest::SendTo {
            plugin: plugin.into(),
            message,
        };
        self.ask(request, unit)
    }

    fn request(
        &self,
        plugin: RStr<'_>,
        message: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        let request = HostRequest::Request {
            plugin: plugin.into(),
            message,
            timeout_ms,
        };
        self.ask(request, payload)
    }

    fn call(
        &self,
        plugin: RStr<'_>,
        method: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        let request = HostRequest::Call {
            plugin: plugin.into(),
            method: method.into(),
            args,
            timeout_ms,
        };
        self.ask(request, payload)
    }

    fn run_hook(&self, name: RStr<'_>, data: Payload) -> RResult<Payload, PluginError> {
        let request = HostRequest::RunHook {
            name: name.into(),
            data,
        };
        self.ask(request, payload)
    }

    fn provider_call(
        &self,
        provider: RStr<'_>,
        method: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        let request = HostRequest::ProviderCall {
            provider: provider.into(),
            method: method.into(),
            args,
            timeout_ms,
        };
        self.ask(request, payload)
    }

    fn storage_get(
        &self,
        scope: StorageScope,
        key: RStr<'_>,
    ) -> RResult<ROption<Payload>, PluginError> {
        let request = HostRequest::StorageGet {
            scope: scope.into(),
            key: key.into(),
        };
        self.ask(request, |r| match r {
            HostReply::Maybe(v) => Ok(ROption::from(v)),
            other => Err(other),
        })
    }

    fn storage_set(
        &self,
        scope: StorageScope,
        key: RStr<'_>,
        value: Payload,
    ) -> RResult<(), PluginError> {
        let request = HostRequest::StorageSet {
            scope: scope.into(),
            key: key.into(),
            value,
        };
        self.ask(request, unit)
    }

    fn storage_delete(&self, scope: StorageScope, key: RStr<'_>) -> RResult<bool, PluginError> {
        let request = HostRequest::StorageDelete {
            scope: scope.into(),
            key: key.into(),
        };
        self.ask(request, |r| match r {
            HostReply::Bool(b) => Ok(b),
            other => Err(other),
        })
    }

    fn storage_scan(
        &self,
        scope: StorageScope,
        start: RStr<'_>,
        end: RStr<'_>,
        limit: u32,
    ) -> RResult<RVec<Entry>, PluginError> {
        let request = HostRequest::StorageScan {
            scope: scope.into(),
            start: start.into(),
            end: end.into(),
            limit,
        };
        self.ask(request, |r| match r {
            HostReply::Entries(v) => Ok(v
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.into(),
                    value,
                })
                .collect()),
            other => Err(other),
        })
    }

    fn storage_batch(&self, scope: StorageScope, ops: RVec<BatchOp>) -> RResult<(), PluginError> {
        let request = HostRequest::StorageBatch {
            scope: scope.into(),
            ops: ops
                .into_iter()
                .map(|op| (op.key.into_string(), op.value.into_option()))
                .collect(),
        };
        self.ask(request, unit)
    }

    fn config(&self) -> Payload {
        self.config.clone()
    }

    fn log(&self, level: u8, message: RStr<'_>) {
        let request = HostRequest::Log {
            level,
            message: message.into(),
        };
        let _ = self.ask(request, unit);
    }

    fn log_max_level(&self) -> u8 {
        self.log_level
    }

    // ---- added in 1.1 ------------------------------------------------------------------------

    fn register(&self, declaration: RStr<'_>) -> RResult<u64, PluginError> {
        self.ask(HostRequest::Register(declaration.into()), |r| match r {
            HostReply::Id(id) => Ok(id),
            other => Err(other),
        })
    }

    fn unregister(&self, id: u64) -> RResult<(), PluginError> {
        self.ask(HostRequest::Unregister(id), unit)
    }

    fn host_api_version(&self) -> RString {
        RString::from(plugin_api::API_VERSION)
    }

    fn current_call(&self) -> ROption<CallStamp> {
        // The worker's executor stamps each call as the host sent it.
        crate::runtime::stamp::current().into()
    }

    fn start_timer(
        &self,
        name: RStr<'_>,
        delay_ms: u64,
        repeat: bool,
    ) -> RResult<u64, PluginError> {
        let request = HostRequest::StartTimer {
            name: name.into(),
            delay_ms,
            repeat,
        };
        self.ask(request, |r| match r {
            HostReply::Id(id) => Ok(id),
            other => Err(other),
        })
    }

    fn stop_timer(&self, id: u64) {
        let _ = self.ask(HostRequest::StopTimer(id), unit);
    }
}
