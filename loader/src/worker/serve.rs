//! Worker mode `serve`: the child process of one isolated plugin.
//!
//! The host starts it with piped stdin, stdout and stderr. It says hello (the versions it
//! speaks) and refuses a host that speaks others; it then reads the start frame, limits its own
//! address space if asked, loads the plugin file with every check of a first load into a
//! private shadow folder of its own, refuses bytes other than those the host loaded, makes the
//! instance with a context that asks the host for everything, and serves the host's calls one
//! at a time until its stdin ends.
//!
//! Frames go out on a duplicate of the original stdout; file descriptor 1 itself is pointed at
//! stderr, so whatever the plugin prints reaches the host's log instead of corrupting the
//! protocol. On Linux the child also asks for SIGKILL when its parent dies, so even a host that
//! is killed leaves no worker behind.

use std::{
    io::{BufReader, Write},
    path::PathBuf,
    sync::Arc,
};

use abi_stable::sabi_trait::TD_Opaque;
use crossbeam_channel::{unbounded, Receiver};
use plugin_api::{abi::HostContext_TO, CancellationToken, ErrorKind, PluginError};

use crate::{
    isolate::{
        input::{Exec, Input, Stamped, FRAME_LIMIT, PROTOCOL_ERROR},
        proxy::{as_call, Link, ProxyContext},
        wire::{self, Hello, Start, ToChild, ToHost},
    },
    load::{
        library::{load_library_with, LoadOptions},
        shadow::ShadowDir,
    },
    runtime::{
        call::{run, Call},
        stamp::{self, Stamp},
    },
};

/// Runs the child until its stdin ends; returns the exit status.
pub(super) fn serve() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // The host's end of stdin covers an orderly exit; this covers a host that was killed.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
    let out = match frames_out() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("loader worker: cannot set up its output: {e}");
            return PROTOCOL_ERROR;
        }
    };
    let mut input = match frames_in() {
        Ok(input) => BufReader::new(input),
        Err(e) => {
            eprintln!("loader worker: cannot set up its input: {e}");
            return PROTOCOL_ERROR;
        }
    };
    let link = Link::new(out);
    let ours = Hello::ours();
    if let Err(e) = link.send_raw(&ours) {
        eprintln!("loader worker: cannot write to the host: {e}");
        return PROTOCOL_ERROR;
    }
    match wire::read_buffered::<_, Hello>(&mut input, FRAME_LIMIT) {
        Ok(Some(theirs)) if theirs == ours => {}
        Ok(Some(theirs)) => {
            eprintln!(
                "loader worker: the host speaks {theirs}; this worker speaks {ours}: refused"
            );
            return PROTOCOL_ERROR;
        }
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("loader worker: no hello from the host: {e}");
            return PROTOCOL_ERROR;
        }
    }
    let start = match wire::read_buffered::<_, ToChild>(&mut input, FRAME_LIMIT) {
        Ok(Some(ToChild::Start(start))) => *start,
        Ok(None) => return 0,
        Ok(Some(other)) => {
            eprintln!("loader worker: expected the start frame, got {other:?}");
            return PROTOCOL_ERROR;
        }
        Err(e) => {
            eprintln!("loader worker: no start frame from the host: {e}");
            return PROTOCOL_ERROR;
        }
    };
    if let Some(mb) = start.memory_limit_mb {
        if let Err(e) = limit_memory(mb) {
            let _ = link.send(&ToHost::Failed(format!(
                "cannot set the memory limit of {mb} MiB: {e}"
            )));
            return 1;
        }
    }
    let failed = |why: String| {
        let _ = link.send(&ToHost::Failed(why));
        1
    };
    let shadow = match ShadowDir::private() {
        Ok(shadow) => shadow,
        Err(e) => return failed(format!("cannot make the worker's shadow folder: {e}")),
    };
    let shadow_path = shadow.path().to_owned();
    let (calls_tx, calls_rx) = unbounded::<Stamped>();
    let input = match Input::new(input, calls_tx, link.clone(), shadow) {
        Ok(input) => input,
        Err(e) => return failed(format!("cannot set up the worker's input: {e}")),
    };
    link.attach(input.clone());
    let executor_link = link.clone();
    let executor_input = input.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("plugin-{}", start.plugin))
        .spawn(move || {
            execute(
                start,
                shadow_path,
                &executor_link,
                &executor_input,
                &calls_rx,
            )
        });
    if let Err(e) = spawned {
        return failed(format!("cannot start a thread: {e}"));
    }
    input.standby()
}

/// Loads the plugin, makes its instance and runs the host's calls on it, in order.
fn execute(
    start: Start,
    shadow: PathBuf,
    link: &Arc<Link>,
    input: &Input,
    calls: &Receiver<Stamped>,
) {
    let options = LoadOptions::new(&shadow)
        .manifest_deadline(std::time::Duration::from_millis(start.manifest_deadline_ms));
    let library = match load_library_with(&start.file, &options) {
        Ok(library) => library,
        Err(e) => {
            let _ = link.send(&ToHost::Failed(crate::error::error_chain(&e)));
            return;
        }
    };
    let refusal = if library.manifest.name != start.plugin {
        Some(format!(
            "{} holds plugin {}, not {}",
            start.file.display(),
            library.manifest.name,
            start.plugin
        ))
    } else if library.fingerprint != start.fingerprint {
        Some(format!(
            "{} changed since the host loaded it (fingerprint {}, the host's {})",
            start.file.display(),
            library.fingerprint,
            start.fingerprint
        ))
    } else {
        None
    };
    if let Some(why) = refusal {
        let _ = link.send(&ToHost::Failed(why));
        return;
    }
    let context = HostContext_TO::from_value(
        ProxyContext {
            link: link.clone(),
            name: start.plugin.clone(),
            config: start.config.clone(),
            log_level: start.log_level,
        },
        TD_Opaque,
    );
    let Some(module) = library.module else {
        let _ = link.send(&ToHost::Failed(format!(
            "{} was not opened in the worker",
            start.file.display()
        )));
        return;
    };
    let mut instance = match (module.instantiate())(context).into_result() {
        Ok(instance) => Some(instance),
        Err(e) => {
            let _ = link.send(&ToHost::Failed(format!("instantiate: {e}")));
            return;
        }
    };
    if link.send(&ToHost::Ready).is_err() {
        return;
    }
    // Set when an event written ahead panicked: the events written ahead after it are not run
    // here, as in process no event reaches a faulted instance (the host delivers them to the
    // fresh one). The host's next call (deactivate, or its next call after orders that never
    // came) ends it.
    let mut faulted_run = false;
    loop {
        let (exec, stamp) = input.next_call(calls);
        let call = match exec {
            Exec::Call(call) => {
                faulted_run = false;
                call
            }
            Exec::Ahead(call) => call,
        };
        // An event's caller is its source and its id the event's own, as in process. The host
        // sends a cancel for an event only while it waits for that event's answer, after every
        // earlier call was answered: this one is the one running.
        let stamped = match (&call, stamp) {
            (Call::Event(event), None) => {
                let token = CancellationToken::new();
                input.mark_running(event.id, &token);
                stamp::enter(Some(Stamp {
                    caller: &event.source,
                    id: event.id,
                    token: Some(token),
                }))
            }
            (_, Some((caller, id, token))) => stamp::enter(Some(Stamp {
                caller: &caller,
                id,
                token: Some(token),
            })),
            (_, None) => stamp::enter(None),
        };
        let answer = if faulted_run {
            Err(PluginError::new(
                ErrorKind::Cancelled,
                "not run: an earlier event of its run panicked",
            ))
        } else {
            let answer = as_call(|| run(&mut instance, call));
            faulted_run = matches!(&answer, Err(e) if e.kind == ErrorKind::Panicked);
            answer
        };
        drop(stamped);
        // Held back for the answers after it, if more calls are queued: `next_call` writes it
        // before it waits for the host.
        if link.send_later(&ToHost::Answer(answer)).is_err() {
            input.leave(0);
        }
    }
}

/// Where frames come from: a duplicate of stdin, which can be polled and read from any thread.
#[cfg(unix)]
fn frames_in() -> std::io::Result<Box<dyn std::io::Read + Send>> {
    Ok(Box::new(std::fs::File::from(rustix::io::dup(
        std::io::stdin(),
    )?)))
}

/// Where frames come from: stdin.
#[cfg(not(unix))]
fn frames_in() -> std::io::Result<Box<dyn std::io::Read + Send>> {
    Ok(Box::new(std::io::stdin()))
}

/// Where frames go: a duplicate of stdout, with stdout itself pointed at stderr.
#[cfg(unix)]
fn frames_out() -> std::io::Result<Box<dyn Write + Send>> {
    let frames = rustix::io::dup(std::io::stdout())?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    Ok(Box::new(std::fs::File::from(frames)))
}

/// Where frames go: stdout (what the plugin prints would break the protocol here).
#[cfg(not(unix))]
fn frames_out() -> std::io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(std::io::stdout()))
}

/// Limits the address space of this process to `mb` MiB (Unix only).
#[cfg(unix)]
fn limit_memory(mb: u64) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let bytes = mb.saturating_mul(1024 * 1024);
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
    .map_err(std::io::Error::from)
}

/// Memory limits are Unix-only.
#[cfg(not(unix))]
fn limit_memory(_mb: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "memory limits are supported on Unix only",
    ))
}
