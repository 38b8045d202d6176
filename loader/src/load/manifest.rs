//! Reading a plugin's manifest within a deadline.
//!
//! `manifest()` is the author's code, the first the host calls. It runs on a reader thread so
//! that one that never returns fails only its own file: the caller stops waiting at the
//! deadline, the reader is left behind (counted), and later reads use another. Readers that
//! return are kept for the next read, so loading a folder does not start a thread per file.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use abi_stable::std_types::RString;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use plugin_api::{PluginError, PluginModRef};

/// The answer of one `manifest()` call.
type Answer = Result<RString, PluginError>;

/// One read for a reader thread: the module, and where the answer goes.
type Job = (PluginModRef, Sender<Answer>);

/// Reader threads that are free, waiting for a job.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Readers left behind in a `manifest()` that missed its deadline.
static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// How many manifest readers this process has left behind, stuck in plugin code.
pub fn abandoned_readers() -> u64 {
    ABANDONED.load(Ordering::Relaxed)
}

fn spawn_reader() -> std::io::Result<Sender<Job>> {
    let (tx, rx): (Sender<Job>, Receiver<Job>) = bounded(1);
    std::thread::Builder::new()
        .name("plugin-manifest".into())
        .spawn(move || {
            for (module, answer) in rx {
                let _ = answer.send((module.manifest())().into_result());
            }
        })?;
    Ok(tx)
}

/// How a read ended without an answer.
pub(crate) enum Missed {
    /// The deadline passed; the reader is left behind.
    Deadline,
    /// No reader thread could be started.
    NoThread(std::io::Error),
}

/// Calls `module`'s `manifest()` and waits for it at most `deadline`.
pub(crate) fn read(module: PluginModRef, deadline: Duration) -> Result<Answer, Missed> {
    let reader = match IDLE.lock().pop() {
        Some(reader) => reader,
        None => spawn_reader().map_err(Missed::NoThread)?,
    };
    let (answer_tx, answer_rx) = bounded(1);
    if let Err(crossbeam_channel::SendError((module, answer_tx))) = reader.send((module, answer_tx))
    {
        // That reader is gone (it cannot be: readers only exit when their sender drops).
        let reader = spawn_reader().map_err(Missed::NoThread)?;
        let _ = reader.send((module, answer_tx));
        return finish(reader, &answer_rx, deadline);
    }
    finish(reader, &answer_rx, deadline)
}

fn finish(
    reader: Sender<Job>,
    answer: &Receiver<Answer>,
    deadline: Duration,
) -> Result<Answer, Missed> {
    match answer.recv_timeout(deadline) {
        Ok(result) => {
            IDLE.lock().push(reader);
            Ok(result)
        }
        Err(_) => {
            // Dropping `reader` lets the thread exit if `manifest()` ever returns.
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            Err(Missed::Deadline)
        }
    }
}
