//! The worker's stdin after the handshake: who reads it, and what each frame does.
//!
//! On Unix the executor (the thread that runs the host's calls on the instance) reads it
//! itself while it waits for the next call, and so does a call that waits for the host's reply
//! to its context request; the worker's main thread is the standby that reads while the
//! executor is busy in plugin code ([`ReadTurn`](super::read_turn::ReadTurn)), and writes out
//! the answers the executor held back if that takes long. Elsewhere the main thread reads
//! everything and hands calls to the executor.
//!
//! Whoever reads a frame acts on it: a call or a run of events goes to the executor's queue, a
//! cancel cancels the running call's token, a reply goes to the thread that asked. The end of
//! stdin (the host is done with this worker, or gone) or a broken frame ends the process.

use std::{
    io::{BufReader, Read},
    sync::Arc,
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use plugin_api::{CancellationToken, PluginError};

use super::{
    proxy::Link,
    wire::{self, HostReply, ToChild},
};
use crate::{load::shadow::ShadowDir, runtime::call::Call};

/// Frames from the host are accepted up to this size (the host is trusted, this only stops a
/// corrupt length from allocating without bound).
pub(crate) const FRAME_LIMIT: usize = 1 << 30;

/// Exit status when the host speaks other versions or breaks the protocol.
pub(crate) const PROTOCOL_ERROR: i32 = 3;

/// What the executor runs: a call, or an event the host wrote ahead of its delivery (in a
/// frame of several; the executor stamps each as it takes it).
pub(crate) enum Exec {
    Call(Call),
    Ahead(Call),
}

/// A call from the host with its stamp: caller, id and the token a cancel frame cancels.
pub(crate) type Stamped = (Exec, Option<(String, u64, CancellationToken)>);

/// The stamped call the host sent last (the executor runs one at a time).
pub(crate) type Running = Arc<Mutex<Option<(u64, CancellationToken)>>>;

/// The worker's stdin, shared by the threads that read it.
pub(crate) struct Input {
    reader: Mutex<BufReader<Box<dyn Read + Send>>>,
    /// The descriptor `reader` reads, polled without taking its lock.
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    #[cfg(unix)]
    turn: super::read_turn::ReadTurn,
    calls: Sender<Stamped>,
    running: Running,
    /// A cancel that came for a call not running yet (an event written ahead).
    cancel_ahead: Mutex<Option<u64>>,
    link: Arc<Link>,
    /// Removed when the process leaves.
    shadow: Mutex<Option<ShadowDir>>,
}

impl Input {
    /// The input after the handshake (`reader` may hold bytes already read), whose calls go to
    /// `calls`.
    ///
    /// # Errors
    /// Unix: stdin cannot be polled.
    pub fn new(
        reader: BufReader<Box<dyn Read + Send>>,
        calls: Sender<Stamped>,
        link: Arc<Link>,
        shadow: ShadowDir,
    ) -> std::io::Result<Arc<Input>> {
        Ok(Arc::new(Input {
            reader: Mutex::new(reader),
            #[cfg(unix)]
            fd: rustix::io::dup(std::io::stdin())?,
            // Nobody holds it while the executor loads the plugin: the standby then reads.
            #[cfg(unix)]
            turn: super::read_turn::ReadTurn::new(false)?,
            calls,
            running: Running::default(),
            cancel_ahead: Mutex::new(None),
            link,
            shadow: Mutex::new(Some(shadow)),
        }))
    }

    /// Marks call `id` as the one running, with the token a cancel frame for it cancels (for
    /// the executor, which does so for each event written ahead as it takes it). A cancel that
    /// came before is applied now.
    pub fn mark_running(&self, id: u64, token: &CancellationToken) {
        let mut running = self.running.lock();
        if self
            .cancel_ahead
            .lock()
            .take_if(|early| *early == id)
            .is_some()
        {
            token.cancel();
        }
        *running = Some((id, token.clone()));
    }

    /// Ends the process with `code`, once the shadow folder is removed.
    ///
    /// The other threads stay where they are (the executor is never told to end): a thread
    /// that ends runs its thread-local destructors, the plugin's included, which take the
    /// dynamic loader's lock that the exit handlers hold while they finalise the libraries; the
    /// two would then wait for each other (seen: a worker that never exited after its stdin
    /// closed).
    ///
    /// Only the first thread to leave runs the exit; another that gets here meanwhile (the
    /// executor and the standby can both see the host go) waits for it: two threads running
    /// the exit handlers at once is undefined.
    pub fn leave(&self, code: i32) -> ! {
        static LEAVING: std::sync::Once = std::sync::Once::new();
        LEAVING.call_once(|| {
            drop(self.shadow.lock().take());
            std::process::exit(code)
        });
        loop {
            std::thread::park();
        }
    }

    /// Reads one frame and acts on it; returns the reply if it is the one to request `mine`.
    fn read_one(&self, mine: Option<u64>) -> Option<Result<HostReply, PluginError>> {
        let frame = wire::read_buffered::<_, ToChild>(&mut *self.reader.lock(), FRAME_LIMIT);
        match frame {
            Ok(Some(ToChild::Call { call, stamp })) => {
                // Made here, so that a cancel frame read next finds it even before the
                // executor has taken the call.
                let stamp = stamp.map(|(caller, id)| {
                    let token = CancellationToken::new();
                    *self.running.lock() = Some((id, token.clone()));
                    (caller, id, token)
                });
                self.queue((Exec::Call(call), stamp));
            }
            Ok(Some(ToChild::Events(events))) => {
                // Stamped by the executor when it takes each (its caller is the event's source).
                for event in events {
                    self.queue((Exec::Ahead(Call::Event(event)), None));
                }
            }
            Ok(Some(ToChild::Cancel { id })) => {
                let running = self.running.lock();
                match running.as_ref() {
                    Some((running_id, token)) if *running_id == id => token.cancel(),
                    // For an event written ahead that the executor has not taken yet: the
                    // host sends it once, so it is kept for when the executor does.
                    _ => *self.cancel_ahead.lock() = Some(id),
                }
            }
            Ok(Some(ToChild::Reply { id, reply })) if Some(id) == mine => return Some(reply),
            Ok(Some(ToChild::Reply { id, reply })) => self.link.settle(id, reply),
            Ok(Some(ToChild::Start(_))) => {
                eprintln!("loader worker: a second start frame");
                self.leave(PROTOCOL_ERROR);
            }
            // The host closed our input: it is done with us (or gone).
            Ok(None) => self.leave(0),
            Err(e) => {
                eprintln!("loader worker: {e}");
                self.leave(PROTOCOL_ERROR);
            }
        }
        None
    }

    fn queue(&self, stamped: Stamped) {
        // The receiver is the executor's, which never ends before the process does.
        if self.calls.send(stamped).is_err() {
            self.leave(1);
        }
    }

    /// The main thread's part: reads whenever the executor does not (Unix: while it is busy in
    /// plugin code), until the process leaves.
    pub fn standby(&self) -> ! {
        loop {
            #[cfg(unix)]
            {
                use std::os::fd::AsFd;
                if !self.turn.standby_wait() {
                    // Never closed in the worker: only leaving ends its input.
                    self.leave(0);
                }
                use super::read_turn::Polled;
                let buffered = !self.reader.lock().buffer().is_empty();
                if buffered {
                    if self.turn.standby_yields() {
                        continue;
                    }
                } else {
                    // Answers the executor holds back for the ones after them go out once they
                    // have waited their time, even while it is stuck in a long handler.
                    let held = self.link.held_for();
                    let timeout = held.map(|held| super::proxy::ANSWER_DELAY.saturating_sub(held));
                    match self.turn.standby_poll(self.fd.as_fd(), timeout) {
                        Ok(Polled::Data) => {}
                        Ok(Polled::GaveUp | Polled::Nudged) => continue,
                        Ok(Polled::Timeout) => {
                            if self.link.flush().is_err() {
                                self.leave(0);
                            }
                            continue;
                        }
                        Err(e) => {
                            eprintln!("loader worker: cannot poll its input: {e}");
                            self.leave(PROTOCOL_ERROR);
                        }
                    }
                }
            }
            let _ = self.read_one(None);
        }
    }

    /// The executor's next call: one read already, or else the next one the host sends. Its
    /// answers written so far go out before it waits.
    #[cfg_attr(
        not(unix),
        allow(
            clippy::never_loop,
            reason = "only Unix has a standby reader whose turn sends the loop round again"
        )
    )]
    pub fn next_call(&self, calls: &Receiver<Stamped>) -> Stamped {
        loop {
            if let Ok(stamped) = calls.try_recv() {
                #[cfg(unix)]
                {
                    self.turn.release(false);
                    // Answers held back while this call runs are the standby's to write out
                    // in time: one that polls without a limit is told to look again.
                    if self.link.holds() {
                        self.turn.nudge();
                    }
                }
                return stamped;
            }
            if self.link.flush().is_err() {
                self.leave(0);
            }
            #[cfg(unix)]
            {
                if self.turn.take() {
                    // The standby may have queued a call just before it gave the turn up.
                    if let Ok(stamped) = calls.try_recv() {
                        self.turn.release(false);
                        return stamped;
                    }
                    let _ = self.read_one(None);
                    continue;
                }
            }
            match calls.recv() {
                Ok(stamped) => return stamped,
                Err(_) => self.leave(1),
            }
        }
    }

    /// Waits for the reply to request `id` (whose channel is `rx`), reading the input itself
    /// while it waits (Unix). For the executor's own requests, made while it runs a call.
    pub fn reply_for(
        &self,
        id: u64,
        rx: &Receiver<Result<HostReply, PluginError>>,
    ) -> Option<Result<HostReply, PluginError>> {
        #[cfg(unix)]
        {
            if !self.turn.take() {
                return rx.recv().ok();
            }
            // The standby may have read the reply just before it gave the turn up.
            let reply = rx.try_recv().ok().or_else(|| loop {
                if let Some(reply) = self.read_one(Some(id)) {
                    self.link.forget(id);
                    break Some(reply);
                }
            });
            self.turn.release(false);
            reply
        }
        #[cfg(not(unix))]
        {
            let _ = id;
            rx.recv().ok()
        }
    }
}
