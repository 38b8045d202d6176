//! Worker mode `manifest`: one plugin file opened and its manifest read in a process of its
//! own, for the doctor.
//!
//! The doctor promises to run none of a plugin author's code in the host. What it cannot learn
//! from the file's bytes (abi_stable's interface version and layout checks, which follow
//! pointers that only exist once the library is mapped, and the manifest, which is whatever
//! `manifest()` returns) it asks of a worker: the host's own executable re-run as
//! `--native-plugins-worker manifest <file> <shadow folder> <sha256> <backstop ms>`.
//!
//! Both sides are here, with what travels between them: [`Message`], one JSON object per line
//! on the worker's stdout.
//!
//! - The worker ([`run`]) says [`Message::Hello`] before anything else, then loads the file
//!   exactly as a host's first load does ([`load_library_with`](crate::load_library_with):
//!   private copy, checks of its bytes, opening with every symbol bound, abi_stable's checks,
//!   the panic-strategy marker, the manifest), with the one SHA-256 the doctor examined as its
//!   allowlist, and answers with [`Message::Manifest`], [`Message::Refused`] or
//!   [`Message::Changed`]. Then it exits.
//! - The doctor ([`read_in_child`]) starts the worker, waits for the hello (a program that does
//!   not say it does not speak the protocol: its host never calls
//!   `loader::worker::run_if_worker()`), then at most the deadline for the answer, and
//!   kills the worker when it has its answer, when the deadline passes, or when anything else
//!   goes wrong. A worker that ends without answering (a panic that escaped, `abort`, a
//!   segfault, `exit`) is an [`Outcome::Ended`] saying how.
//!
//! Plugin code in the worker may print to stdout too: lines that are not messages are skipped,
//! and every message is written on a line of its own (preceded by a newline, so a plugin's
//! unfinished line cannot swallow it).

use std::{
    collections::HashSet,
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};

use crate::{
    doctor::{self, Problem},
    error::LoadError,
    load::library::{load_library_with, LoadOptions},
};

/// The mode's name after [`WORKER_ARG`](crate::launch::WORKER_ARG).
pub(crate) const MODE: &str = "manifest";

/// The version of [`Message`]; a worker of another version is not used.
const PROTOCOL: u32 = 1;

/// How long a worker may take to say hello, at the least (a busy machine can take a while to
/// start a process); the manifest deadline when that is longer.
const STARTUP: Duration = Duration::from_secs(10);

/// The longest line read from a worker; longer ones are cut into pieces (which are not
/// messages), so a worker cannot make the doctor buffer without bound.
const MAX_LINE: u64 = 16 << 20;

/// How much of a worker's stderr is kept (its end): enough for a panic message and a
/// backtrace's first lines.
const STDERR_TAIL: usize = 4096;

/// One line on the worker's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Message {
    /// First, before anything is loaded: this program is a loader worker of `protocol`.
    Hello {
        /// [`PROTOCOL`] of the worker.
        protocol: u32,
    },
    /// The file passed every check of a first load; its manifest, as JSON.
    Manifest {
        /// [`Manifest::to_json`](plugin_api::Manifest::to_json) of the checked manifest.
        json: String,
    },
    /// The file was refused; what the doctor reports about it.
    Refused {
        /// The finding.
        problem: Problem,
        /// Whether the file is a plugin at all (see [`doctor::is_plugin_error`]).
        is_plugin: bool,
    },
    /// The file's bytes are no longer those the doctor examined.
    Changed,
}

/// What the doctor learned from a worker about one file.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// [`Message::Manifest`]'s JSON.
    Manifest(String),
    /// [`Message::Refused`].
    Refused {
        /// The finding.
        problem: Problem,
        /// Whether the file is a plugin at all.
        is_plugin: bool,
    },
    /// [`Message::Changed`].
    Changed,
    /// No answer within the deadline; the worker was killed.
    TimedOut,
    /// The worker ended without answering.
    Ended {
        /// How, as "ended with signal 11 (SIGSEGV)" or "exited with status 3".
        how: String,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
}

/// Why no worker can read manifests at all (the same for every file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// No worker program was configured, and this executable's own path is unknown.
    NoProgram {
        /// The system's message.
        message: String,
    },
    /// The program could not be started.
    CannotStart {
        /// The worker program.
        program: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The program started but is not a loader worker.
    NotAWorker {
        /// The worker program.
        program: PathBuf,
        /// What it did instead of saying hello.
        what: String,
    },
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoProgram { message } => write!(
                f,
                "cannot start this executable as the manifest reader: its path is unknown ({message})"
            ),
            Unavailable::CannotStart { program, message } => write!(
                f,
                "cannot start the manifest reader {}: {message}",
                program.display()
            ),
            Unavailable::NotAWorker { program, what } => write!(
                f,
                "{} does not speak the loader's worker protocol ({what}), so no manifest was read",
                program.display()
            ),
        }
    }
}

/// What [`read_in_child`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The worker program; `None` for this executable.
    pub program: Option<&'a Path>,
    /// The plugin file.
    pub file: &'a Path,
    /// Where the worker makes its private copy.
    pub shadow_dir: &'a Path,
    /// The SHA-256 of the bytes the doctor examined: the worker refuses other bytes.
    pub sha256: &'a str,
    /// How long the worker may take, from its hello to its answer.
    pub deadline: Duration,
}

// ---- the doctor's side ---------------------------------------------------------------------

/// Starts a worker for `request.file` and waits for its answer (see the [module docs](self)).
/// The worker is killed before this returns, whatever happened.
///
/// # Errors
/// [`Unavailable`] when the worker program cannot be started or does not speak the protocol.
pub(crate) fn read_in_child(request: &Request<'_>) -> Result<Outcome, Unavailable> {
    let program = match request.program {
        Some(program) => program.to_owned(),
        None => std::env::current_exe().map_err(|e| Unavailable::NoProgram {
            message: e.to_string(),
        })?,
    };
    let cannot_start = |e: std::io::Error| Unavailable::CannotStart {
        program: program.clone(),
        message: e.to_string(),
    };
    // The worker's own deadline only ends a worker whose doctor is gone; the doctor kills it
    // long before.
    let backstop = request.deadline.saturating_mul(2).saturating_add(STARTUP);
    let mut command = crate::launch::command_at(request.program, MODE).map_err(cannot_start)?;
    command
        .arg(request.file)
        .arg(request.shadow_dir)
        .arg(request.sha256)
        .arg(backstop.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Worker(command.spawn().map_err(cannot_start)?);
    let (lines, stderr) = child.read_output().map_err(cannot_start)?;
    let not_a_worker = |what: String| Unavailable::NotAWorker {
        program: program.clone(),
        what,
    };

    let startup = request.deadline.max(STARTUP);
    let hello_by = after(startup);
    loop {
        match lines.recv_deadline(hello_by) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match parse(&line) {
                Some(Message::Hello { protocol }) if protocol == PROTOCOL => break,
                Some(Message::Hello { protocol }) => {
                    return Err(not_a_worker(format!(
                        "it speaks version {protocol}, this loader {PROTOCOL}"
                    )))
                }
                _ => return Err(not_a_worker(format!("it printed {}", shorten(&line)))),
            },
            Err(RecvTimeoutError::Timeout) => {
                return Err(not_a_worker(format!(
                    "it did not answer within {}",
                    seconds(startup)
                )))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let how = child.ended(hello_by);
                let said = first_line(&tail(&stderr));
                return Err(not_a_worker(if said.is_empty() {
                    format!("it {how} without answering")
                } else {
                    format!("it {how} without answering, saying {}", shorten(&said))
                }));
            }
        }
    }

    let answer_by = after(request.deadline);
    loop {
        match lines.recv_deadline(answer_by) {
            Ok(line) => match parse(&line) {
                Some(Message::Manifest { json }) => return Ok(Outcome::Manifest(json)),
                Some(Message::Refused { problem, is_plugin }) => {
                    return Ok(Outcome::Refused { problem, is_plugin })
                }
                Some(Message::Changed) => return Ok(Outcome::Changed),
                // Another hello, or the plugin's own output.
                Some(Message::Hello { .. }) | None => continue,
            },
            Err(RecvTimeoutError::Timeout) => return Ok(Outcome::TimedOut),
            Err(RecvTimeoutError::Disconnected) => {
                let how = child.ended(answer_by);
                return Ok(Outcome::Ended {
                    how,
                    stderr: tail(&stderr),
                });
            }
        }
    }
}

/// The instant `wait` from now, or a year from now for a wait beyond what `Instant` holds (a
/// deadline configured as "never").
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// A started worker, killed and reaped when dropped.
struct Worker(Child);

impl Worker {
    /// Starts the threads that read the worker's stdout (line by line) and stderr (its end,
    /// sent when it closes).
    fn read_output(&mut self) -> std::io::Result<(Receiver<String>, Receiver<String>)> {
        let missing = || std::io::Error::other("the worker's output is not piped");
        let stdout = self.0.stdout.take().ok_or_else(missing)?;
        let stderr = self.0.stderr.take().ok_or_else(missing)?;
        let (line_tx, lines) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("manifest-worker-out".to_owned())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                loop {
                    let mut line = Vec::new();
                    match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line).into_owned();
                            if line_tx.send(text).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        let (tail_tx, tail) = crossbeam_channel::bounded(1);
        thread::Builder::new()
            .name("manifest-worker-err".to_owned())
            .spawn(move || {
                let mut kept: Vec<u8> = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut stderr = stderr;
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    kept.extend_from_slice(&chunk[..n]);
                    if kept.len() > 2 * STDERR_TAIL {
                        kept.drain(..kept.len() - STDERR_TAIL);
                    }
                }
                let start = kept.len().saturating_sub(STDERR_TAIL);
                let _ = tail_tx.send(String::from_utf8_lossy(&kept[start..]).into_owned());
            })?;
        Ok((lines, tail))
    }

    /// Waits until `by` for the worker to end (its stdout closed, so it normally is ending)
    /// and says how; kills it at `by`.
    fn ended(&mut self, by: Instant) -> String {
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return describe_exit(status),
                Ok(None) if Instant::now() < by => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = self.0.kill();
                    return "closed its output without answering and was killed at the deadline"
                        .to_owned();
                }
                Err(e) => return format!("ended (its status cannot be read: {e})"),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Killing a worker that has exited already is harmless; reaping it is needed.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The worker's stderr once it closed; empty if it stays open (a process the plugin started
/// holds it) a moment after the worker ended.
fn tail(stderr: &Receiver<String>) -> String {
    stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn parse(line: &str) -> Option<Message> {
    serde_json::from_str(line.trim()).ok()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// `line` quoted, escaped and cut to a readable length.
fn shorten(line: &str) -> String {
    const MAX: usize = 80;
    let line = line.trim();
    if line.chars().count() > MAX {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{line:?}")
    }
}

/// `2 s`, `1.5 s`, `300 ms`.
pub(crate) fn seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{ms} ms")
    }
}

/// How a worker ended: "ended with signal 11 (SIGSEGV)", "exited with status 3".
fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("ended with signal {signal} ({})", signal_name(signal));
        }
    }
    match status.code() {
        #[cfg(windows)]
        Some(code) if code < 0 => {
            // NTSTATUS codes such as 0xc0000005 (access violation) read as negative numbers.
            format!("ended with exception 0x{:08x}", code as u32)
        }
        Some(code) => format!("exited with status {code}"),
        None => "ended".to_owned(),
    }
}

/// A signal's usual name (`SIGSEGV`); numbers differ between systems, rustix knows them.
#[cfg(unix)]
fn signal_name(signal: i32) -> String {
    use rustix::process::Signal;
    match Signal::from_named_raw(signal) {
        Some(Signal::ABORT) => "SIGABRT".to_owned(),
        Some(Signal::ALARM) => "SIGALRM".to_owned(),
        Some(named) => {
            // rustix's Debug form is `"Signal::SEGV"`, quotes included.
            let debug = format!("{named:?}");
            let short = debug.trim_matches('"').trim_start_matches("Signal::");
            format!("SIG{short}")
        }
        None => "an unnamed signal".to_owned(),
    }
}

// ---- the worker's side ---------------------------------------------------------------------

/// The worker: `args` are those after the mode (`<file> <shadow folder> <sha256> <backstop
/// ms>`). Returns the process's exit code.
pub(crate) fn run(args: impl Iterator<Item = OsString>) -> i32 {
    // First, before any plugin code can run and print.
    if say(&Message::Hello { protocol: PROTOCOL }).is_err() {
        return 1;
    }
    let args: Vec<OsString> = args.collect();
    let [file, shadow_dir, sha256, backstop_ms] = args.as_slice() else {
        eprintln!(
            "loader worker {MODE}: expected <file> <shadow folder> <sha256> <backstop ms>, got {} arguments",
            args.len()
        );
        return 2;
    };
    let (Some(sha256), Some(backstop_ms)) = (
        sha256.to_str(),
        backstop_ms.to_str().and_then(|ms| ms.parse::<u64>().ok()),
    ) else {
        eprintln!("loader worker {MODE}: bad sha256 or backstop argument");
        return 2;
    };
    let file = Path::new(file);
    let only_these_bytes: HashSet<String> = [sha256.to_ascii_lowercase()].into();
    let options = LoadOptions::new(Path::new(shadow_dir))
        .allowlist(Some(&only_these_bytes))
        .manifest_deadline(Duration::from_millis(backstop_ms));
    let message = match load_library_with(file, &options) {
        Ok(library) => match library.manifest.to_json() {
            Ok(json) => Message::Manifest { json },
            Err(e) => refused(&LoadError::Manifest {
                origin: file.into(),
                message: e.to_string(),
            }),
        },
        Err(LoadError::NotAllowed { .. }) => Message::Changed,
        Err(error) => refused(&error),
    };
    match say(&message) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn refused(error: &LoadError) -> Message {
    Message::Refused {
        problem: doctor::problem(error),
        is_plugin: doctor::is_plugin_error(error),
    }
}

/// Writes `message` on a line of its own on stdout.
fn say(message: &Message) -> std::io::Result<()> {
    let json = serde_json::to_string(message).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{json}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back() {
        for message in [
            Message::Hello { protocol: PROTOCOL },
            Message::Manifest {
                json: r#"{"name":"x"}"#.to_owned(),
            },
            Message::Changed,
        ] {
            let line = serde_json::to_string(&message).expect("serializes");
            let back = parse(&format!("  {line}\n")).expect("parses");
            assert_eq!(format!("{back:?}"), format!("{message:?}"));
        }
        assert!(parse("hello from a plugin").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(2)), "2 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(300)), "300 ms");
    }

    #[cfg(unix)]
    #[test]
    fn signals_have_their_usual_names() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(6), "SIGABRT");
        assert_eq!(signal_name(9), "SIGKILL");
    }

    #[test]
    fn long_lines_are_cut_and_escaped() {
        assert_eq!(shorten("a\x1bb"), "\"a\\u{1b}b\"");
        let long = "x".repeat(200);
        assert!(shorten(&long).ends_with("\"…"));
        assert!(shorten(&long).chars().count() < 90);
    }
}
