//! Process isolation: a plugin, the same unchanged library, can run in a child process of its
//! own, which the host survives whatever the plugin does there (exit, abort, a segfault, a
//! stack overflow, running out of memory, a panic while unwinding, a handler that never
//! returns).
//!
//! The host side keeps everything as for an in-process plugin: the plugin's slot, queues and
//! thread, and the one `invoke` that enters plugin code. Only the instance differs: a
//! [`RemoteInstance`](remote::RemoteInstance) whose methods travel to the child as the runtime's
//! own `Call`/`Answer` values, while the plugin's context calls come back as requests that the
//! plugin's real context in the host answers (capabilities, source stamping, storage, quotas
//! and deadlines stay the host's).
//!
//! 1. [`wire`]: the frames and the versioned handshake.
//! 2. [`broker`]: the host answers the child's context requests.
//! 3. [`proxy`]: the child's context, which asks the host, and [`input`]: who reads the
//!    child's stdin and what each frame does there.
//! 4. [`process`]: starting, watching, killing and reaping the child.
//! 5. [`remote`]: the instance the plugin's thread holds.
//! 6. [`read_turn`]: whose turn it is to read a pipe, so that the thread waiting on it reads it
//!    itself (Unix).
//!
//! The child's side is the worker mode `serve` (`loader::worker`, `worker/serve.rs`).

pub(crate) mod broker;
pub(crate) mod input;
pub(crate) mod process;
pub(crate) mod proxy;
#[cfg(unix)]
pub(crate) mod read_turn;
pub(crate) mod remote;
pub(crate) mod wire;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use abi_stable::sabi_trait::TD_Opaque;
use parking_lot::Mutex;
use plugin_api::{abi::PluginInstance_TO, HostContextBox, PluginError};

use crate::{
    dispatch::{Caller, Dispatcher},
    observe::event::LifecycleEvent,
    runtime::slot::{Remote, Slot},
};
use process::{Launch, Process};

/// What every isolated plugin of one host shares: the worker program, the live children (so a
/// missed deadline can kill the right one) and the count of kills.
pub(crate) struct Children {
    /// The program re-run as worker; `None`: the host's own executable.
    pub program: Option<PathBuf>,
    live: Mutex<HashMap<Arc<str>, Weak<Process>>>,
    kills: AtomicU64,
    dispatcher: Weak<Dispatcher>,
}

impl Children {
    /// The children of the host whose dispatcher is `dispatcher`.
    pub fn new(program: Option<PathBuf>, dispatcher: &Arc<Dispatcher>) -> Arc<Children> {
        Arc::new(Children {
            program,
            live: Mutex::new(HashMap::new()),
            kills: AtomicU64::new(0),
            dispatcher: Arc::downgrade(dispatcher),
        })
    }

    /// Child processes the host killed (missed deadlines, children that would not exit).
    pub fn kills(&self) -> u64 {
        self.kills.load(Ordering::Relaxed)
    }

    fn count_kill(&self) {
        self.kills.fetch_add(1, Ordering::Relaxed);
    }

    /// Process ids of the children alive now.
    pub fn pids(&self) -> Vec<u32> {
        self.live
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .map(|p| p.pid)
            .collect()
    }

    /// The process id of `plugin`'s current child, if it has one.
    pub fn pid_of(&self, plugin: &str) -> Option<u32> {
        self.current(plugin).map(|p| p.pid)
    }

    /// The current child of `plugin`, if it is isolated and running.
    fn current(&self, plugin: &str) -> Option<Arc<Process>> {
        self.live.lock().get(plugin).and_then(Weak::upgrade)
    }

    /// Kills `plugin`'s child after `grace` (a call missed the host's deadline): the plugin's
    /// thread, waiting for the answer, is then free to take the supervisor's restart order.
    /// Returns whether the plugin runs in a child (otherwise nothing can be killed).
    pub fn kill_stuck(&self, plugin: &str, why: &str, grace: Duration) -> bool {
        let Some(process) = self.current(plugin) else {
            return false;
        };
        let why = why.to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("kill-{plugin}"))
            .spawn(move || {
                if !process.wait_reaped(grace) {
                    process.kill(&why);
                }
            });
        spawned.is_ok()
    }

    fn remember(&self, process: &Arc<Process>) {
        self.live
            .lock()
            .insert(process.name.clone(), Arc::downgrade(process));
    }

    fn forget(&self, process: &Arc<Process>) {
        let mut live = self.live.lock();
        if live
            .get(&process.name)
            .is_some_and(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(process)))
        {
            live.remove(&process.name);
        }
    }

    fn announce(&self, event: LifecycleEvent) {
        if let Some(dispatcher) = self.dispatcher.upgrade() {
            let _ = dispatcher.emit(&Caller::host(), event.event_type(), event.payload());
        }
    }
}

/// What a new isolated instance is made from, besides its context.
pub(crate) struct Spec {
    pub start: wire::Start,
    pub version: String,
    /// Bounds the start (spawn, handshake, load, instantiate) and `activate`.
    pub activation_deadline: Duration,
    /// Bounds `deactivate` and the child's exit.
    pub grace: Duration,
    /// The largest frame accepted from the child.
    pub frame_limit: usize,
    pub slot: Weak<Slot>,
    pub children: Arc<Children>,
}

/// Starts a child for `spec` and returns the instance that lives in it, for the plugin's thread.
pub(crate) fn instantiate(spec: Spec, context: HostContextBox) -> Result<Remote, PluginError> {
    let Spec {
        start,
        version,
        activation_deadline,
        grace,
        frame_limit,
        slot,
        children,
    } = spec;
    let launch = Launch {
        start,
        version,
        program: children.program.clone(),
        deadline: activation_deadline,
        frame_limit,
        slot,
        shared: children.clone(),
    };
    match Process::start(launch, context) {
        Ok(process) => {
            children.remember(&process);
            let ahead = remote::Ahead::new(process.clone());
            let instance = remote::RemoteInstance {
                process,
                activate_bound: activation_deadline,
                grace,
                ahead: ahead.clone(),
            };
            Ok(Remote {
                instance: PluginInstance_TO::from_value(instance, TD_Opaque),
                ahead,
            })
        }
        Err(e) => Err(e),
    }
}
