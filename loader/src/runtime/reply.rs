//! Reply ports: how the answer to a call gets back to the thread waiting for it.
//!
//! Every thread that calls into a plugin owns one port, made on its first call and reused for
//! every later one. A fresh channel per call would cost two allocations and a disconnect on
//! every call, all of it on cache lines that then move between the caller's CPU and the
//! plugin's; measured on two CPUs, a ping-pong through a fresh reply channel took 2–5 µs
//! against under 2 µs through a reused one.
//!
//! Reusing a port means a reply can outlive the call it answers (the caller timed out). Each
//! reply therefore carries the id of the work it answers, the port says which work its thread
//! is waiting for, and a job sends only if its caller still waits: otherwise the reply is late,
//! and its sender counts and logs it as before. (A caller that gives up in the instant between
//! that check and the send leaves the reply in its port; its next call discards it, uncounted.)
//! A job dropped before it ran (its plugin was deactivated) tells the waiting caller so, which
//! turns into a "cancelled" error at once.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use plugin_api::PluginError;

use super::call::Answer;

/// A reply in a port: the work it answers, and the answer (`None`: the job was dropped unrun).
struct Reply {
    work: u64,
    result: Option<Result<Answer, PluginError>>,
}

/// The sending half of a thread's port, shared with the jobs it submitted.
struct Port {
    tx: Sender<Reply>,
    /// The work the owning thread is waiting for (0: none).
    waiting: AtomicU64,
}

/// Replies a port holds. One is awaited at a time; the rest are rare leftovers of calls that
/// timed out just as their reply was sent.
const PORT_CAPACITY: usize = 8;

thread_local! {
    static PORT: RefCell<Option<(Arc<Port>, Receiver<Reply>)>> = const { RefCell::new(None) };
}

/// How a wait ended.
pub(crate) enum Waited {
    /// The handler's result.
    Answer(Result<Answer, PluginError>),
    /// The job was dropped before it ran.
    Cancelled,
    /// The deadline passed.
    TimedOut,
}

/// This thread's port, taken for the duration of one call.
pub(crate) struct Waiter {
    port: Arc<Port>,
    /// Always `Some` until dropped, when it goes back to the thread.
    rx: Option<Receiver<Reply>>,
    work: u64,
}

impl Waiter {
    /// Takes this thread's port (made on first use) to wait for the answer to `work`.
    pub fn new(work: u64) -> Waiter {
        let (port, rx) = PORT.with(|p| p.borrow_mut().take()).unwrap_or_else(|| {
            let (tx, rx) = bounded(PORT_CAPACITY);
            let port = Arc::new(Port {
                tx,
                waiting: AtomicU64::new(0),
            });
            (port, rx)
        });
        // Leftovers answer calls that are over.
        while rx.try_recv().is_ok() {}
        port.waiting.store(work, Ordering::Release);
        Waiter {
            port,
            rx: Some(rx),
            work,
        }
    }

    /// Where the job sends its answer.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            port: self.port.clone(),
            work: self.work,
            sent: false,
        }
    }

    /// Polls for the answer for a few microseconds (and, with `patience`, for that long more,
    /// offering the CPU to other threads between looks), then blocks until `deadline`.
    ///
    /// crossbeam's `recv` spins before it parks too, but for less time than a round trip
    /// through a plugin's thread takes on two CPUs (about 4 µs): without this first poll the
    /// caller parks on most calls, and every answer then pays a futex wake-up. Measured with
    /// `demo-app bench`: without it the round trip went bimodal, 0.69–2.18 of the raw pair
    /// depending on which mode a run fell into (BENCHMARKS.md).
    ///
    /// A plugin in a child process answers in tens of microseconds; a caller that slept for
    /// that long was woken on a CPU that had gone idle, which on the virtual machines measured
    /// cost 50–150 µs per call instead of 15 (BENCHMARKS.md). Its callers pass a `patience`.
    pub fn wait(&self, deadline: Instant, patience: Duration) -> Waited {
        let Some(rx) = &self.rx else {
            return Waited::Cancelled;
        };
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            match rx.try_recv() {
                Ok(reply) if reply.work == self.work => return Self::unpack(reply),
                Ok(_) => {}
                Err(TryRecvError::Empty) => backoff.snooze(),
                // The port holds its own sender: never disconnected.
                Err(TryRecvError::Disconnected) => return Waited::Cancelled,
            }
        }
        if !patience.is_zero() {
            let until = Instant::now() + patience;
            while Instant::now() < until.min(deadline) {
                match rx.try_recv() {
                    Ok(reply) if reply.work == self.work => return Self::unpack(reply),
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => std::thread::yield_now(),
                    Err(TryRecvError::Disconnected) => return Waited::Cancelled,
                }
            }
        }
        loop {
            match rx.recv_deadline(deadline) {
                Ok(reply) if reply.work == self.work => return Self::unpack(reply),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Waited::TimedOut,
                Err(RecvTimeoutError::Disconnected) => return Waited::Cancelled,
            }
        }
    }

    fn unpack(reply: Reply) -> Waited {
        match reply.result {
            None => Waited::Cancelled,
            Some(result) => Waited::Answer(result),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // From now on a reply to this work is late.
        self.port.waiting.store(0, Ordering::Release);
        if let Some(rx) = self.rx.take() {
            let port = (self.port.clone(), rx);
            PORT.with(|p| {
                let mut p = p.borrow_mut();
                if p.is_none() {
                    *p = Some(port);
                }
            });
        }
    }
}

/// Where a job sends its answer. Dropped unsent, it tells a still-waiting caller that the job
/// was cancelled.
pub(crate) struct ReplyTo {
    port: Arc<Port>,
    work: u64,
    sent: bool,
}

impl ReplyTo {
    /// Sends the answer; `false` if the caller is no longer waiting for it (a late reply).
    pub fn send(mut self, result: Result<Answer, PluginError>) -> bool {
        self.sent = true;
        self.deliver(Some(result))
    }

    fn deliver(&self, result: Option<Result<Answer, PluginError>>) -> bool {
        if self.port.waiting.load(Ordering::Acquire) != self.work {
            return false;
        }
        self.port
            .tx
            .try_send(Reply {
                work: self.work,
                result,
            })
            .is_ok()
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.sent {
            self.deliver(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use plugin_api::{HookOutcome, Payload};

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn an_answer_reaches_the_waiting_thread() {
        let waiter = Waiter::new(7);
        let reply = waiter.reply_to();
        std::thread::spawn(move || assert!(reply.send(Ok(Answer::Payload(Payload::empty())))));
        assert!(matches!(
            waiter.wait(soon(), Duration::ZERO),
            Waited::Answer(Ok(Answer::Payload(p))) if p.is_empty()
        ));
    }

    #[test]
    fn a_dropped_job_cancels_and_a_reply_after_the_wait_is_late() {
        let waiter = Waiter::new(1);
        drop(waiter.reply_to());
        assert!(matches!(
            waiter.wait(soon(), Duration::ZERO),
            Waited::Cancelled
        ));
        let late = waiter.reply_to();
        assert!(matches!(
            waiter.wait(Instant::now() + Duration::from_millis(20), Duration::ZERO),
            Waited::TimedOut
        ));
        drop(waiter);
        assert!(
            !late.send(Ok(Answer::Payload(Payload::empty()))),
            "nobody waits for work 1"
        );
        // The next call on this thread reuses the port and sees only its own answer.
        let waiter = Waiter::new(2);
        let reply = waiter.reply_to();
        assert!(reply.send(Err(PluginError::invalid("two"))));
        assert!(matches!(
            waiter.wait(soon(), Duration::ZERO),
            Waited::Answer(Err(e)) if e.message() == "two"
        ));
    }

    #[test]
    fn a_stale_reply_in_the_port_is_skipped() {
        let waiter = Waiter::new(3);
        let stale = waiter.reply_to();
        drop(waiter);
        let waiter = Waiter::new(4);
        // A reply that raced its caller's deadline and got in anyway.
        stale
            .port
            .tx
            .try_send(Reply {
                work: 3,
                result: Some(Ok(Answer::Payload(Payload::empty()))),
            })
            .expect("room");
        assert!(waiter
            .reply_to()
            .send(Ok(Answer::Hook(HookOutcome::Veto("no".into())))));
        assert!(matches!(
            waiter.wait(soon(), Duration::ZERO),
            Waited::Answer(Ok(Answer::Hook(HookOutcome::Veto(r)))) if r.as_str() == "no"
        ));
        drop(stale);
    }
}
