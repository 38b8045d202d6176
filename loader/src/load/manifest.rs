//! Reading a plugin's manifest with a deadline.
//!
//! `manifest()` is the first function of the author's that the loader calls. A manifest that
//! never returns must fail that one file, not hang the host's loading thread, so the call runs
//! on a reader thread and the loader waits for it at most the deadline
//! ([`DEFAULT_MANIFEST_DEADLINE`] unless told otherwise).
//!
//! Readers are reused: an idle reader waits for the next manifest, so loading a hundred
//! plugins starts no thread per plugin (one per loading thread that needs one at the same
//! time). A reader whose call misses its deadline cannot be stopped: it is dropped from the
//! pool (detached, counted by [`detached_manifest_readers`]) and exits by itself if the call
//! ever returns; the next read gets another reader.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::Duration,
};

use abi_stable::std_types::{RResult, RString};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use plugin_api::PluginError;

/// How long the loader waits for a plugin's `manifest()` unless told otherwise
/// ([`LoadOptions::manifest_deadline`](crate::LoadOptions::manifest_deadline)).
pub const DEFAULT_MANIFEST_DEADLINE: Duration = Duration::from_secs(10);

/// Idle readers kept for reuse; more are started when several threads load at once, and those
/// beyond this many exit after their read.
const MAX_IDLE_READERS: usize = 4;

/// A plugin's `manifest` entry point.
pub(crate) type ManifestFn = extern "C" fn() -> RResult<RString, PluginError>;

/// What a reader sends back: the manifest JSON, or the plugin's error as text.
type Answer = Result<String, String>;

/// One reader thread, seen from the loader: where to send it work, where its answers arrive.
struct Reader {
    jobs: Sender<ManifestFn>,
    answers: Receiver<Answer>,
}

static IDLE: Mutex<Vec<Reader>> = Mutex::new(Vec::new());
static DETACHED: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);

/// How many manifest reader threads missed a deadline and were abandoned, still inside a
/// plugin's `manifest()` or finished since (they exit by themselves when the call returns).
pub fn detached_manifest_readers() -> u64 {
    DETACHED.load(Ordering::Relaxed)
}

/// How many manifest reader threads this process has started (reuse keeps this small).
pub fn manifest_readers_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// Why [`read_manifest`] has no manifest.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// `manifest()` returned an error (its text).
    Plugin(String),
    /// `manifest()` did not return within the deadline; its reader was abandoned.
    TimedOut,
    /// No reader thread could be started (the system's message).
    NoThread(String),
}

/// Calls `manifest` on a reader thread and waits at most `deadline` for its answer.
pub(crate) fn read_manifest(manifest: ManifestFn, deadline: Duration) -> Result<String, ReadError> {
    let reader = match IDLE.lock().pop() {
        Some(reader) => reader,
        None => start_reader().map_err(|e| ReadError::NoThread(e.to_string()))?,
    };
    if reader.jobs.send(manifest).is_err() {
        // The reader is gone (it cannot be: it only exits when its job channel closes).
        return Err(ReadError::NoThread("the manifest reader exited".to_owned()));
    }
    match crate::wait::recv_patiently(&reader.answers, deadline, crate::wait::PATIENCE) {
        Ok(answer) => {
            let mut idle = IDLE.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(reader);
            }
            answer.map_err(ReadError::Plugin)
        }
        Err(RecvTimeoutError::Timeout) => {
            DETACHED.fetch_add(1, Ordering::Relaxed);
            // Dropping `reader` closes its job channel: the thread exits once the call returns.
            Err(ReadError::TimedOut)
        }
        Err(RecvTimeoutError::Disconnected) => Err(ReadError::NoThread(
            "the manifest reader exited without an answer".to_owned(),
        )),
    }
}

fn start_reader() -> std::io::Result<Reader> {
    let (jobs, inbox) = crossbeam_channel::bounded::<ManifestFn>(1);
    let (outbox, answers) = crossbeam_channel::bounded::<Answer>(1);
    thread::Builder::new()
        .name("manifest-reader".to_owned())
        .spawn(move || {
            for manifest in inbox {
                // The entry point is fenced by `export_plugin!`: a panic comes back as an error.
                let answer = match manifest() {
                    RResult::ROk(json) => Ok(json.into_string()),
                    RResult::RErr(error) => Err(error.to_string()),
                };
                if outbox.send(answer).is_err() {
                    // The loader gave up on this call and dropped us.
                    break;
                }
            }
        })?;
    STARTED.fetch_add(1, Ordering::Relaxed);
    Ok(Reader { jobs, answers })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    extern "C" fn quick() -> RResult<RString, PluginError> {
        RResult::ROk(RString::from(r#"{"name":"quick"}"#))
    }

    extern "C" fn refuses() -> RResult<RString, PluginError> {
        RResult::RErr(PluginError::failed("no manifest today"))
    }

    static RELEASE: AtomicBool = AtomicBool::new(false);

    extern "C" fn hangs() -> RResult<RString, PluginError> {
        while !RELEASE.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(5));
        }
        RResult::ROk(RString::from("{}"))
    }

    #[test]
    fn answers_errors_and_deadlines() {
        let second = Duration::from_secs(5);
        assert_eq!(
            read_manifest(quick, second).expect("answered"),
            r#"{"name":"quick"}"#
        );
        match read_manifest(refuses, second) {
            Err(ReadError::Plugin(text)) => assert!(text.contains("no manifest today"), "{text}"),
            other => panic!("expected the plugin's error, got {other:?}"),
        }
        let detached = detached_manifest_readers();
        assert!(matches!(
            read_manifest(hangs, Duration::from_millis(50)),
            Err(ReadError::TimedOut)
        ));
        assert!(detached_manifest_readers() > detached);
        // The next read gets another reader.
        assert!(read_manifest(quick, second).is_ok());
        RELEASE.store(true, Ordering::Relaxed);
    }

    #[test]
    fn readers_are_reused() {
        // Sequential reads on this thread reuse one reader; other tests may start readers of
        // their own meanwhile, so the bound is loose, but far below one thread per read.
        let before = manifest_readers_started();
        for _ in 0..100 {
            read_manifest(quick, Duration::from_secs(5)).expect("answered");
        }
        let started = manifest_readers_started() - before;
        assert!(started < 20, "{started} readers started for 100 reads");
    }
}
