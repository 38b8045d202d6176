//! Ctrl-C and SIGTERM: the plugins are shut down and the host's temporary folder removed before
//! the process ends with 130 (SIGINT) or 143 (SIGTERM); a second signal ends it at once.
//!
//! [`install`] starts one thread that waits for the signals (signal-hook on Unix, ctrlc on
//! Windows, where Ctrl-C and Ctrl-Break both count as SIGINT). The first signal:
//!
//! 1. wakes everything that waits on [`receiver`] (the `watch` loop, the scripted shell), which
//!    then returns normally, so the session is dropped the ordinary way: every plugin's
//!    `deactivate` in reverse dependency order, then the temporary shadow folder;
//! 2. on its own thread, deactivates the plugins of the host [`Registration`] names and
//!    removes its temporary shadow folder ([`loader::Host::close`]), which also ends a one-shot
//!    command waiting in plugin code (its call is cancelled or times out) so that it returns
//!    too;
//! 3. gives the main thread [`GRACE`] to finish that way (`main` calls [`finish`]), and ends
//!    the process itself after that. The interactive shell waits in its line editor, which
//!    nothing can wake: there the process ends as soon as the host is closed, since the
//!    plugins are deactivated and the folder is gone already.

use std::{
    process,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Condvar, Mutex, OnceLock,
    },
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use loader::Host;

use crate::error::AppError;

/// How long the main thread has to leave on its own after a signal before the process is ended
/// without it.
pub const GRACE: Duration = Duration::from_secs(5);

/// Exit code for SIGINT (Ctrl-C): 128 + 2.
pub const SIGINT_CODE: u8 = 130;

/// Exit code for SIGTERM: 128 + 15 (Unix only: Windows has no SIGTERM).
#[cfg(unix)]
pub const SIGTERM_CODE: u8 = 143;

/// What the signal thread and the main thread share.
struct Shared {
    /// 0 until the first signal, then its exit code.
    code: AtomicU8,
    /// Dropped at the first signal, which disconnects every [`receiver`] at once.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
    /// The host to shut down when a signal comes.
    host: Mutex<Option<Host>>,
    /// Set while the main thread waits in the line editor, which no signal wakes.
    at_prompt: AtomicBool,
    /// Set once the signal thread has shut the host down and let go of it.
    cleaned: Mutex<bool>,
    cleaned_changed: Condvar,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (wake, woken) = crossbeam_channel::bounded(0);
        Shared {
            code: AtomicU8::new(0),
            wake: Mutex::new(Some(wake)),
            woken,
            host: Mutex::new(None),
            at_prompt: AtomicBool::new(false),
            cleaned: Mutex::new(false),
            cleaned_changed: Condvar::new(),
        }
    })
}

/// Starts handling SIGINT and SIGTERM (Ctrl-C and Ctrl-Break on Windows). Without a handler
/// (the system refused one) a signal ends the process the default way, which is logged.
pub fn install() {
    if let Err(e) = platform::install() {
        log::debug!("no signal handler ({e}): Ctrl-C ends the process without cleanup");
    }
}

/// A receiver that disconnects at the first signal: `recv` on it returns `Err` then.
pub fn receiver() -> Receiver<()> {
    shared().woken.clone()
}

/// The exit code of the signal that stopped the process, once one came.
pub fn interrupted() -> Option<u8> {
    match shared().code.load(Ordering::SeqCst) {
        0 => None,
        code => Some(code),
    }
}

/// `Err(AppError::Interrupted)` once a signal came: what a long step checks before it goes on.
///
/// # Errors
/// A signal came.
pub fn check() -> Result<(), AppError> {
    interrupted().map_or(Ok(()), |code| Err(AppError::Interrupted { code }))
}

/// While it lives, a signal shuts this host down. Keep it next to the host and drop it first:
/// the host's last clone should be the caller's, so that dropping it removes the shadow folder.
#[must_use = "the host is shut down on a signal only while the registration lives"]
pub struct Registration(());

/// Registers `host` to be shut down at the first signal.
pub fn register(host: &Host) -> Registration {
    if let Ok(mut slot) = shared().host.lock() {
        *slot = Some(host.clone());
    }
    Registration(())
}

impl Drop for Registration {
    fn drop(&mut self) {
        let host = shared().host.lock().ok().and_then(|mut slot| slot.take());
        drop(host);
    }
}

/// Runs `wait` (a read from the line editor) marked as waiting at the prompt: a signal coming
/// meanwhile ends the process as soon as the plugins are deactivated.
pub fn at_prompt<T>(wait: impl FnOnce() -> T) -> T {
    let shared = shared();
    shared.at_prompt.store(true, Ordering::SeqCst);
    let result = wait();
    shared.at_prompt.store(false, Ordering::SeqCst);
    result
}

/// After a signal: waits until the signal thread has shut the host down and let go of it, so
/// that the main thread's drop of the session really was the last one. Returns at once when no
/// signal came.
pub fn finish() {
    if interrupted().is_none() {
        return;
    }
    let shared = shared();
    let Ok(mut cleaned) = shared.cleaned.lock() else {
        return;
    };
    while !*cleaned {
        match shared.cleaned_changed.wait_timeout(cleaned, GRACE) {
            Ok((guard, timeout)) if !timeout.timed_out() => cleaned = guard,
            _ => return,
        }
    }
}

/// What a signal does; `code` is its exit code.
fn on_signal(code: u8) {
    let shared = shared();
    if shared
        .code
        .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // The second signal: the user does not want to wait for the cleanup.
        process::exit(i32::from(code));
    }
    if let Ok(mut wake) = shared.wake.lock() {
        wake.take();
    }
    // On a thread of its own, so the signal thread stays free to see a second signal.
    let cleanup = std::thread::Builder::new()
        .name("signal-cleanup".into())
        .spawn(move || cleanup(code));
    if cleanup.is_err() {
        process::exit(i32::from(code));
    }
}

fn cleanup(code: u8) {
    let shared = shared();
    let host = shared.host.lock().ok().and_then(|mut slot| slot.take());
    if let Some(host) = host {
        host.close();
        drop(host);
    }
    if let Ok(mut cleaned) = shared.cleaned.lock() {
        *cleaned = true;
    }
    shared.cleaned_changed.notify_all();
    if !shared.at_prompt.load(Ordering::SeqCst) {
        std::thread::sleep(GRACE);
    }
    process::exit(i32::from(code));
}

#[cfg(unix)]
mod platform {
    use signal_hook::{
        consts::{SIGINT, SIGTERM},
        iterator::Signals,
    };

    use super::{on_signal, SIGINT_CODE, SIGTERM_CODE};

    pub fn install() -> std::io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_signal(if signal == SIGTERM {
                        SIGTERM_CODE
                    } else {
                        SIGINT_CODE
                    });
                }
            })?;
        Ok(())
    }
}

#[cfg(windows)]
mod platform {
    use super::{on_signal, SIGINT_CODE};

    pub fn install() -> Result<(), ctrlc::Error> {
        ctrlc::set_handler(|| on_signal(SIGINT_CODE))
    }
}

#[cfg(not(any(unix, windows)))]
mod platform {
    pub fn install() -> Result<(), &'static str> {
        Err("signals are not handled on this platform")
    }
}
