//! The host's side of one isolated plugin's child process: starting it, the handshake, the
//! thread that reads its frames and its stderr, killing it, and saying how it ended.
//!
//! The plugin's thread reads the child's stdout itself while it waits for a call's answer (on
//! Unix; see [`read_turn`](super::read_turn)). The reader thread is the standby: it reads what
//! comes while nobody waits. What it reads for a call (an answer, a request the child makes
//! while it serves the call) goes to the [`inbox`](Process::inbox) of the thread waiting for
//! it; requests from the plugin's other threads are served on a thread of their own, whoever
//! reads them. When the pipe ends (or a frame does not decode) the reader thread reaps the
//! child, works out how it ended, and, when nobody asked for that, reports the plugin faulted:
//! the supervisor restarts it as it would after a panic.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use plugin_api::{ErrorKind, HostContextBox, PluginError};

use super::{
    broker,
    wire::{self, Hello, HostReply, HostRequest, Start, ToChild, ToHost},
    Children,
};
use crate::{
    observe::event::LifecycleEvent,
    runtime::{call::Answer, slot::Slot},
};

/// What reaches the thread waiting for a call's answer.
pub(super) enum Inbound {
    Answer(Result<Answer, PluginError>),
    Request { id: u64, request: HostRequest },
    Ended,
}

/// What the plugin's thread read while it held the turn.
#[cfg_attr(not(unix), allow(dead_code))] // Elsewhere it never holds the turn.
pub(super) enum Turned {
    Frame(ToHost),
    /// Nothing within the timeout.
    Timeout,
    /// The output ended or broke: the reader thread ends the child and says so in the inbox.
    Ended,
}

/// What the host knows of the child's life.
#[derive(Default)]
struct State {
    /// The plugin was loaded and instantiated in the child.
    ready: bool,
    /// The host is stopping it (deactivate or drop): its end is expected.
    closing: bool,
    /// Why the host killed it, if it did.
    killed_for: Option<String>,
    /// How it ended, once it did.
    ended: Option<String>,
}

/// Lines of the child's stderr kept to explain its end.
const TAIL: usize = 16;

/// How long a child whose stdout ended may take to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// One isolated plugin's child process.
pub(crate) struct Process {
    pub name: Arc<str>,
    version: String,
    pub pid: u32,
    input: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
    state: Mutex<State>,
    pub(super) inbox: Receiver<Inbound>,
    /// The child's stdout, read by whoever holds the turn.
    output: Mutex<BufReader<ChildStdout>>,
    /// The largest frame accepted from the child.
    frame_limit: usize,
    /// Whose turn it is to read `output` (Unix; elsewhere the reader thread always reads).
    #[cfg(unix)]
    turn: super::read_turn::ReadTurn,
    /// `output`'s descriptor, polled without taking `output`'s lock.
    #[cfg(unix)]
    output_fd: std::os::fd::OwnedFd,
    /// A broken frame the plugin's thread read, for the reader thread to end the child with.
    #[cfg(unix)]
    broken: Mutex<Option<String>>,
    pub(super) context: Arc<HostContextBox>,
    memory_limit_mb: Option<u64>,
    tail: Mutex<VecDeque<String>>,
    /// Disconnected once the child was reaped.
    reaped: Receiver<()>,
    slot: Weak<Slot>,
    shared: Arc<Children>,
}

/// What [`Process::start`] needs.
pub(super) struct Launch {
    pub start: Start,
    pub version: String,
    pub program: Option<std::path::PathBuf>,
    pub deadline: Duration,
    pub frame_limit: usize,
    pub slot: Weak<Slot>,
    pub shared: Arc<Children>,
}

impl Process {
    /// Starts the worker, says hello, sends `launch.start`, and waits (at most
    /// `launch.deadline`) until the child has loaded the plugin and made its instance.
    ///
    /// # Errors
    /// The worker cannot be started, speaks other versions, fails to load the plugin, or does
    /// not finish in time; the child is gone by then.
    pub(super) fn start(
        launch: Launch,
        context: HostContextBox,
    ) -> Result<Arc<Process>, PluginError> {
        let name: Arc<str> = Arc::from(launch.start.plugin.as_str());
        let failed = |what: String| PluginError::failed(format!("plugin {name}: {what}"));
        let mut command = crate::launch::command_at(launch.program.as_deref(), "serve")
            .map_err(|e| failed(format!("cannot find the worker program: {e}")))?;
        command
            .arg(&*name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("cannot start its worker process {program}: {e}")))?;
        let (Some(mut input), Some(output), Some(errors)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed("its worker process has no pipes".into()));
        };
        #[cfg(unix)]
        let polling = rustix::io::dup(&output)
            .map_err(std::io::Error::from)
            .and_then(|fd| Ok((fd, super::read_turn::ReadTurn::new(true)?)));
        #[cfg(unix)]
        let (output_fd, turn) = match polling {
            Ok(polling) => polling,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "cannot poll its worker process's output: {e}"
                )));
            }
        };
        let (inbox_tx, inbox_rx) = unbounded();
        let (reaped_tx, reaped_rx) = bounded::<()>(0);
        let process = Arc::new(Process {
            pid: child.id(),
            name: name.clone(),
            version: launch.version,
            input: Mutex::new(None),
            child: Mutex::new(child),
            state: Mutex::new(State::default()),
            inbox: inbox_rx,
            output: Mutex::new(BufReader::new(output)),
            frame_limit: launch.frame_limit,
            #[cfg(unix)]
            turn,
            #[cfg(unix)]
            output_fd,
            #[cfg(unix)]
            broken: Mutex::new(None),
            context: Arc::new(context),
            memory_limit_mb: launch.start.memory_limit_mb,
            tail: Mutex::new(VecDeque::new()),
            reaped: reaped_rx,
            slot: launch.slot,
            shared: launch.shared,
        });
        let (stderr_done_tx, stderr_done_rx) = bounded::<()>(0);
        let stderr_process = Arc::downgrade(&process);
        let stderr_name = name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("stderr-{name}"))
            .spawn(move || {
                forward_stderr(errors, &stderr_name, &stderr_process);
                drop(stderr_done_tx);
            });
        if let Err(e) = spawned {
            process.kill("the host cannot start a thread for it");
            return Err(failed(format!("cannot start a thread: {e}")));
        }
        let hello = wire::write_frame(&mut input, &Hello::ours())
            .and_then(|()| wire::write_frame(&mut input, &ToChild::Start(Box::new(launch.start))));
        *process.input.lock() = Some(input);
        let (started_tx, started_rx) = bounded::<Result<(), String>>(1);
        let reader = process.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("isolated-{name}"))
            .spawn(move || {
                reader.read(&inbox_tx, &started_tx, stderr_done_rx);
                drop(reaped_tx);
            });
        if let Err(e) = spawned {
            process.kill("the host cannot start a thread for it");
            return Err(failed(format!("cannot start a thread: {e}")));
        }
        let outcome = match started_rx.recv_timeout(launch.deadline) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(PluginError::failed(format!("plugin {name}: {why}"))),
            Err(_) => {
                process.kill(&format!(
                    "it did not start within {} ms",
                    launch.deadline.as_millis()
                ));
                Err(PluginError::new(
                    ErrorKind::Timeout,
                    format!(
                        "plugin {name}'s worker process did not start within {} ms: it was killed",
                        launch.deadline.as_millis()
                    ),
                ))
            }
        };
        match (outcome, hello) {
            (Ok(()), _) => Ok(process),
            (Err(e), _) => {
                process.kill("it did not start");
                process.wait_reaped(EXIT_WAIT);
                Err(e)
            }
        }
    }

    /// The reader thread's body.
    fn read(
        self: &Arc<Process>,
        inbox: &Sender<Inbound>,
        started: &Sender<Result<(), String>>,
        stderr_done: Receiver<()>,
    ) {
        let ours = Hello::ours();
        let hello = wire::read_buffered::<_, Hello>(&mut *self.output.lock(), self.frame_limit);
        let protocol_error = match hello {
            Ok(Some(theirs)) if theirs == ours => self.serve_frames(inbox, started),
            Ok(Some(theirs)) => {
                let _ = started.send(Err(format!(
                    "its worker process speaks {theirs}; this host speaks {ours}: refused"
                )));
                Some(String::new())
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        #[cfg(unix)]
        self.turn.close();
        if protocol_error.is_some() {
            self.kill_quietly();
        }
        let status = self.reap();
        // The child's last words (a panic message, "memory allocation failed") explain its end.
        let _ = stderr_done.recv_timeout(Duration::from_millis(500));
        let description = self.describe(status, protocol_error.filter(|e| !e.is_empty()));
        let (unexpected, was_ready) = {
            let mut state = self.state.lock();
            state.ended = Some(description.clone());
            (
                state.ready && !state.closing && state.killed_for.is_none(),
                state.ready,
            )
        };
        let text = format!("plugin {}'s process {description}", self.name);
        if !was_ready {
            let _ = started.send(Err(format!("its worker process {description}")));
        }
        if unexpected {
            log::error!("{text}");
            self.shared.announce(LifecycleEvent::Error {
                plugin: self.name.to_string(),
                version: Some(self.version.clone()),
                error: text.clone(),
            });
            if let Some(slot) = self.slot.upgrade() {
                slot.mark_faulted(text, false);
            }
        } else {
            log::debug!("{text}");
        }
        let _ = inbox.send(Inbound::Ended);
        self.shared.forget(self);
    }

    /// Reads frames until the pipe ends; returns the protocol error, if that is why it stopped.
    ///
    /// On Unix this thread is the standby: it reads only while the plugin's thread is not
    /// waiting for an answer ([`ReadTurn`](super::read_turn::ReadTurn)).
    fn serve_frames(
        self: &Arc<Process>,
        inbox: &Sender<Inbound>,
        started: &Sender<Result<(), String>>,
    ) -> Option<String> {
        loop {
            #[cfg(unix)]
            {
                use super::read_turn::Polled;
                use std::os::fd::AsFd;
                if !self.turn.standby_wait() {
                    return None;
                }
                // Left by the plugin's thread, which read it and handed the turn over at once.
                if let Some(broken) = self.broken.lock().take() {
                    return Some(broken);
                }
                let buffered = !self.output.lock().buffer().is_empty();
                if buffered {
                    if self.turn.standby_yields() {
                        continue;
                    }
                } else {
                    match self.turn.standby_poll(self.output_fd.as_fd(), None) {
                        Ok(Polled::Data) => {}
                        Ok(Polled::GaveUp | Polled::Nudged | Polled::Timeout) => continue,
                        Err(e) => return Some(format!("cannot poll its output: {e}")),
                    }
                }
            }
            let frame = match wire::read_buffered::<_, ToHost>(
                &mut *self.output.lock(),
                self.frame_limit,
            ) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            };
            match frame {
                ToHost::Ready => {
                    self.state.lock().ready = true;
                    let _ = started.send(Ok(()));
                }
                ToHost::Failed(why) => {
                    let _ = started.send(Err(why));
                }
                ToHost::Answer(result) => {
                    let _ = inbox.send(Inbound::Answer(result));
                }
                ToHost::Request {
                    id,
                    in_call: true,
                    request,
                } => {
                    let _ = inbox.send(Inbound::Request { id, request });
                }
                ToHost::Request { id, request, .. } => self.serve_aside(id, request),
            }
        }
    }

    /// Serves a request that is not part of the call being waited for: logging and stopping a
    /// timer (which ask for no reply) here and in order, others from the plugin's own threads on
    /// a thread of the host's, as an in-process plugin's thread would be served.
    pub(super) fn serve_aside(self: &Arc<Process>, id: u64, request: HostRequest) {
        if id == 0 {
            let _ = broker::serve(&self.context, request);
            return;
        }
        let process = self.clone();
        let _ = std::thread::Builder::new()
            .name(format!("request-{}", self.name))
            .spawn(move || {
                let reply = broker::serve(&process.context, request);
                process.reply(id, reply);
            });
    }

    /// The plugin's thread takes the turn to read the child's output while it waits for an
    /// answer; `false` when it cannot (the output ended, or this is not Unix): it then waits on
    /// the inbox.
    pub(super) fn take_turn(&self) -> bool {
        #[cfg(unix)]
        {
            self.turn.take()
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// The plugin's thread gives the turn back (it got its answer, or it serves a request).
    pub(super) fn release_turn(&self) {
        #[cfg(unix)]
        self.turn.release(false);
    }

    /// Reads the next frame from the child within `timeout`, for the plugin's thread holding
    /// the turn. When the output ended or broke, the turn goes to the reader thread at once,
    /// which ends the child; the caller then waits on the inbox.
    pub(super) fn read_turn(&self, timeout: Option<Duration>) -> Turned {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let mut output = self.output.lock();
            if output.buffer().is_empty() {
                match super::read_turn::readable(self.output_fd.as_fd(), timeout) {
                    Ok(true) => {}
                    Ok(false) => return Turned::Timeout,
                    Err(e) => return self.hand_over(Some(format!("cannot poll its output: {e}"))),
                }
            }
            match wire::read_buffered::<_, ToHost>(&mut *output, self.frame_limit) {
                Ok(Some(frame)) => Turned::Frame(frame),
                Ok(None) => {
                    drop(output);
                    self.hand_over(None)
                }
                Err(e) => {
                    drop(output);
                    self.hand_over(Some(e.to_string()))
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = timeout;
            Turned::Ended
        }
    }

    /// Gives the turn to the reader thread at once, with the broken frame if there was one.
    #[cfg(unix)]
    fn hand_over(&self, broken: Option<String>) -> Turned {
        if let Some(broken) = broken {
            *self.broken.lock() = Some(broken);
        }
        self.turn.release(true);
        Turned::Ended
    }

    /// Answers the child's request `id`.
    pub(super) fn reply(&self, id: u64, reply: Result<HostReply, PluginError>) {
        let _ = self.send(&ToChild::Reply { id, reply });
    }

    /// Writes one frame to the child.
    pub(super) fn send(&self, frame: &ToChild) -> std::io::Result<()> {
        wire::with_frame(frame, |bytes| {
            let mut input = self.input.lock();
            let Some(pipe) = input.as_mut() else {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            };
            pipe.write_all(bytes)?;
            pipe.flush()
        })
    }

    /// Marks the start of a call: `Err` with how the process ended if it did. A deactivation
    /// makes the process's end expected.
    pub(super) fn begin(&self, closing: bool) -> Result<(), PluginError> {
        let mut state = self.state.lock();
        if let Some(ended) = &state.ended {
            return Err(PluginError::new(
                ErrorKind::Cancelled,
                format!("plugin {}'s process {ended}", self.name),
            ));
        }
        state.closing |= closing;
        Ok(())
    }

    /// The error for a call that the process's end cut off.
    pub(super) fn ended_error(&self) -> PluginError {
        let state = self.state.lock();
        let ended = state.ended.as_deref().unwrap_or("ended");
        let kind = if state.killed_for.is_some() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Failed
        };
        PluginError::new(kind, format!("plugin {}'s process {ended}", self.name))
    }

    /// Kills the child (SIGKILL) for `reason`, unless it already ended; counts the kill.
    /// Returns whether it killed.
    pub fn kill(&self, reason: &str) -> bool {
        {
            let mut state = self.state.lock();
            if state.ended.is_some() {
                return false;
            }
            state.killed_for.get_or_insert_with(|| reason.to_owned());
        }
        let killed = self.child.lock().kill().is_ok();
        if killed {
            self.shared.count_kill();
            log::warn!(
                "plugin {}: killed its process {}: {reason}",
                self.name,
                self.pid
            );
        }
        killed
    }

    /// Kills without counting (a child that broke the protocol).
    fn kill_quietly(&self) {
        let _ = self.child.lock().kill();
    }

    /// Closes the child's stdin: it exits when it reads the end.
    pub(super) fn close(&self) {
        self.state.lock().closing = true;
        self.input.lock().take();
    }

    /// Waits at most `limit` for the reader thread to have reaped the child; returns whether it
    /// did.
    pub(super) fn wait_reaped(&self, limit: Duration) -> bool {
        matches!(
            self.reaped.recv_timeout(limit),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }

    /// Waits for the child to exit (killing it if it lingers after its stdout closed).
    fn reap(&self) -> Option<ExitStatus> {
        let until = Instant::now() + EXIT_WAIT;
        loop {
            match self.child.lock().try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= until {
                self.kill("it closed its output but did not exit");
                return self.child.lock().wait().ok();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// How the process ended, in words ("ended: signal 11 (SIGSEGV)").
    fn describe(&self, status: Option<ExitStatus>, protocol_error: Option<String>) -> String {
        if let Some(e) = protocol_error {
            return format!("broke the protocol ({e}) and was killed");
        }
        if let Some(reason) = &self.state.lock().killed_for {
            return format!("was killed: {reason}");
        }
        let Some(status) = status else {
            return "ended (its exit status is unknown)".to_owned();
        };
        let tail = self.tail.lock();
        let said = |words: &str| tail.iter().any(|line| line.contains(words));
        let how = exit_words(status);
        if let Some(limit) = self.memory_limit_mb {
            if said("memory allocation of") || said("out of memory") {
                return format!("exceeded its memory limit of {limit} MiB ({how})");
            }
        }
        if said("has overflowed its stack") {
            return format!("ended: {how} after a stack overflow");
        }
        format!("ended: {how}")
    }
}

/// "exited with status 0", "signal 11 (SIGSEGV)".
fn exit_words(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return match signal_name(signal) {
                Some(name) => format!("signal {signal} ({name})"),
                None => format!("signal {signal}"),
            };
        }
    }
    status.to_string()
}

/// The names of the signals a crashing or killed process usually ends with (Linux numbering,
/// shared by the other Unixes for these).
#[cfg(unix)]
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 if cfg!(target_os = "linux") => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 if !cfg!(target_os = "linux") => "SIGBUS",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 if cfg!(target_os = "linux") => "SIGXCPU",
        _ => return None,
    })
}

/// Forwards the child's stderr, line by line, to the host's logger with the plugin's name as
/// target, keeping the last lines for [`Process::describe`].
fn forward_stderr(errors: std::process::ChildStderr, name: &str, process: &Weak<Process>) {
    let mut lines = BufReader::new(errors);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        log::warn!(target: name, "{text}");
        if let Some(process) = process.upgrade() {
            let mut tail = process.tail.lock();
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(text.to_owned());
        }
    }
}
