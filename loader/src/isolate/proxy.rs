//! The child's side of the plugin's context: a [`HostContext`] whose methods send a
//! [`HostRequest`] to the host and wait for its [`HostReply`].
//!
//! Plugin threads may call the context at the same time: every request gets an id, and the
//! child's reader thread hands each reply to the thread waiting for that id ([`Link::settle`]).
//! The plugin's name, its configuration and the host's log level are known from the start
//! frame and answered here.

use std::{
    cell::Cell,
    collections::HashMap,
    io::Write,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use plugin_api::{
    BatchOp, CallStamp, CollectedReply, Entry, ErrorKind, HostContext, Payload, PluginError,
    StorageScope,
};

use super::wire::{self, HostReply, HostRequest, ToHost};

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

/// The child's connection to the host: the frame writer and the requests waiting for replies.
pub(crate) struct Link {
    out: Mutex<Box<dyn Write + Send>>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    next: AtomicU64,
}

impl Link {
    /// A link that writes frames to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Arc<Link> {
        Arc::new(Link {
            out: Mutex::new(out),
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
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
        let bytes = wire::encode(frame)?;
        let mut out = self.out.lock();
        out.write_all(&bytes)?;
        out.flush()
    }

    /// Hands the host's reply to request `id` to the thread waiting for it.
    pub fn settle(&self, id: u64, reply: Result<HostReply, PluginError>) {
        if let Some(waiting) = self.waiting.lock().remove(&id) {
            let _ = waiting.send(reply);
        }
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
        rx.recv().unwrap_or_else(|_| Err(gone("no reply")))
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
        shape: impl FnOnce(HostReply) -> Option<T>,
    ) -> RResult<T, PluginError> {
        let asked = catch_unwind(AssertUnwindSafe(|| {
            self.link.ask(request).and_then(|reply| {
                let text = format!("{reply:?}");
                shape(reply).ok_or_else(|| {
                    PluginError::failed(format!("internal error: unexpected host reply {text}"))
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

fn unit(r: HostReply) -> Option<()> {
    matches!(r, HostReply::Unit).then_some(())
}

fn payload(r: HostReply) -> Option<Payload> {
    match r {
        HostReply::Payload(p) => Some(p),
        _ => None,
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
            HostReply::Id(id) => Some(id),
            _ => None,
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
            HostReply::Collected(v) => Some(
                v.into_iter()
                    .map(|(plugin, result)| CollectedReply {
                        plugin: plugin.into(),
                        result: result.into(),
                    })
                    .collect(),
            ),
            _ => None,
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
            HostReply::Maybe(v) => Some(ROption::from(v)),
            _ => None,
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
            HostReply::Bool(b) => Some(b),
            _ => None,
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
            HostReply::Entries(v) => Some(
                v.into_iter()
                    .map(|(key, value)| Entry {
                        key: key.into(),
                        value,
                    })
                    .collect(),
            ),
            _ => None,
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
            HostReply::Id(id) => Some(id),
            _ => None,
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
            HostReply::Id(id) => Some(id),
            _ => None,
        })
    }

    fn stop_timer(&self, id: u64) {
        let _ = self.ask(HostRequest::StopTimer(id), unit);
    }
}
