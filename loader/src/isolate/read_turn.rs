//! Whose turn it is to read a pipe: the thread that waits on it reads it itself, and a standby
//! thread reads only while nobody has waited for a while.
//!
//! A call to an isolated plugin crosses two pipes. Had one thread always read each pipe and
//! handed what it read to the thread waiting for it, every call would wake four threads instead
//! of two, and on the virtual machines we measured a wake-up across CPUs costs far more than a
//! pipe's (a pipe tells the scheduler that the writer is about to wait, so the reader runs on
//! the writer's CPU). So the *main* reader (on the host's side the plugin's thread, which waits
//! for its call's answers; in the worker the executor, which waits for the next call) reads the
//! pipe itself. What arrives when it is not waiting (a request from one of the plugin's own
//! threads, a cancel for the call running, the end of the pipe) is read by the *standby*, which
//! takes the turn once the main reader has left it for [`LINGER`] and gives it back as soon as
//! the main reader wants it: the main reader writes a byte to a wake-up pipe that the standby
//! polls with the data pipe (and checks between frames it finds already buffered). The same
//! pipe can also *nudge* a standby that keeps the turn to look at its own state again (the
//! worker's executor does when it starts a call with answers still held back, which the
//! standby then writes out in time).
//!
//! A stream of calls therefore never involves the standby: it wakes at most once per
//! [`LINGER`] to see that the main reader is still busy. An idle pair costs nothing: the
//! standby blocks in `poll`. Unix only; elsewhere the standby reads all the time (no `poll` on
//! Windows pipes) and the main reader waits for what it hands over.

use std::{
    io,
    os::fd::{BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// How long the main reader may leave the turn before the standby takes it. A request from a
/// plugin's own thread while its call runs, or a cancel, waits at most this long to be read.
pub(crate) const LINGER: Duration = Duration::from_millis(2);

/// Who reads now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    Main,
    Standby,
}

#[derive(Debug)]
struct State {
    holder: Holder,
    /// When the main reader last gave the turn up.
    released: Instant,
    /// The main reader asked for the turn (one byte is in the wake-up pipe).
    wanted: bool,
    /// The standby waits without a timeout until the main reader gives the turn up.
    parked: bool,
    /// The standby should take the turn now (the main reader saw the pipe end).
    urgent: bool,
    /// A nudge's byte is in the wake-up pipe.
    nudged: bool,
    /// The pipe ended: nobody reads it any more.
    closed: bool,
}

/// The turn to read one pipe, shared by one main reader and one standby.
pub(crate) struct ReadTurn {
    state: Mutex<State>,
    changed: Condvar,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
}

/// What [`ReadTurn::standby_poll`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Polled {
    /// The data pipe has bytes (or its end) to read.
    Data,
    /// The main reader wants the turn: the standby has given it up.
    GaveUp,
    /// Neither within the timeout.
    Timeout,
    /// The main reader asked the standby to look at its state again ([`ReadTurn::nudge`]); it
    /// keeps the turn.
    Nudged,
}

impl ReadTurn {
    /// A turn that the standby holds first (it reads the handshake), or nobody.
    ///
    /// # Errors
    /// The wake-up pipe cannot be made.
    pub fn new(standby_first: bool) -> io::Result<ReadTurn> {
        let (wake_rx, wake_tx) = rustix::pipe::pipe()?;
        // Never blocks: a byte counted in `wanted` or `nudged` may have been read already.
        rustix::io::ioctl_fionbio(&wake_rx, true)?;
        Ok(ReadTurn {
            state: Mutex::new(State {
                holder: if standby_first {
                    Holder::Standby
                } else {
                    Holder::Nobody
                },
                released: Instant::now(),
                wanted: false,
                parked: false,
                urgent: false,
                nudged: false,
                closed: false,
            }),
            changed: Condvar::new(),
            wake_rx,
            wake_tx,
        })
    }

    /// The main reader takes the turn, waking the standby and waiting for it to give the turn
    /// up if it holds it. Returns `false` once the pipe ended (the standby saw it).
    pub fn take(&self) -> bool {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return false;
            }
            match state.holder {
                Holder::Nobody | Holder::Main => {
                    state.holder = Holder::Main;
                    return true;
                }
                Holder::Standby => {
                    if !state.wanted {
                        state.wanted = true;
                        // The standby polls this pipe; a failed write leaves it to the pipe's
                        // own traffic (or end) to wake it.
                        let _ = rustix::io::write(&self.wake_tx, &[1]);
                    }
                    self.changed.wait(&mut state);
                }
            }
        }
    }

    /// The main reader gives the turn up; the standby takes it after [`LINGER`], or at once
    /// when `urgent` (the main reader saw the pipe end or break, which the standby handles).
    pub fn release(&self, urgent: bool) {
        let mut state = self.state.lock();
        if state.holder == Holder::Main {
            state.holder = Holder::Nobody;
            state.released = Instant::now();
        }
        state.urgent |= urgent;
        if state.parked || urgent {
            self.changed.notify_all();
        }
    }

    /// The standby waits until it should read: the main reader left the turn for [`LINGER`],
    /// or asked for it to be taken at once. Returns `false` once the pipe is closed.
    pub fn standby_wait(&self) -> bool {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return false;
            }
            match state.holder {
                Holder::Standby => return true,
                Holder::Nobody => {
                    let left = state.released.elapsed();
                    if state.urgent || left >= LINGER {
                        state.holder = Holder::Standby;
                        state.urgent = false;
                        return true;
                    }
                    self.changed.wait_for(&mut state, LINGER - left);
                }
                Holder::Main => {
                    state.parked = true;
                    self.changed.wait(&mut state);
                    state.parked = false;
                }
            }
        }
    }

    /// The standby, holding the turn, waits until `data` has something to read or the main
    /// reader wants the turn (in that case it gives the turn up before returning), or at most
    /// `timeout`.
    ///
    /// # Errors
    /// `poll` failed.
    pub fn standby_poll(
        &self,
        data: BorrowedFd<'_>,
        timeout: Option<Duration>,
    ) -> io::Result<Polled> {
        let timeout = timespec(timeout)?;
        loop {
            let mut fds = [
                PollFd::new(&data, PollFlags::IN),
                PollFd::new(&self.wake_rx, PollFlags::IN),
            ];
            let ready = match poll(&mut fds, timeout.as_ref()) {
                Ok(ready) => ready,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if ready == 0 {
                return Ok(Polled::Timeout);
            }
            let [data_ready, wake_ready] = fds.map(|fd| !fd.revents().is_empty());
            if wake_ready {
                return Ok(if self.answer_wake() {
                    Polled::GaveUp
                } else {
                    Polled::Nudged
                });
            }
            if data_ready {
                return Ok(Polled::Data);
            }
        }
    }

    /// The standby, holding the turn with data already buffered (so it would not poll), gives
    /// the turn up if the main reader wants it; returns whether it did. Without this a
    /// standby reading a steady stream of frames would keep the turn from the main reader.
    pub fn standby_yields(&self) -> bool {
        // Only the standby clears `wanted`: it is still set when `answer_wake` looks.
        self.state.lock().wanted && self.answer_wake()
    }

    /// The standby takes the wake-up pipe's bytes (a nudge's, a request for the turn's) and
    /// gives the turn up if the main reader wants it; returns whether it did. A byte written
    /// after the read stays for the next poll, which then finds nothing to do.
    fn answer_wake(&self) -> bool {
        let mut bytes = [0u8; 8];
        let _ = rustix::io::read(&self.wake_rx, &mut bytes);
        let mut state = self.state.lock();
        state.nudged = false;
        if !state.wanted {
            return false;
        }
        state.wanted = false;
        state.holder = Holder::Nobody;
        self.changed.notify_all();
        true
    }

    /// Has a standby that holds the turn look at its state again (it returns
    /// [`Polled::Nudged`] from a poll without a limit). Nothing when it does not hold the turn:
    /// it looks when it takes it.
    pub fn nudge(&self) {
        let mut state = self.state.lock();
        if state.holder == Holder::Standby && !state.nudged && !state.wanted {
            state.nudged = true;
            let _ = rustix::io::write(&self.wake_tx, &[2]);
        }
    }

    /// The standby is done with the pipe (it ended): the main reader's [`ReadTurn::take`] returns
    /// `false` from now on.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.holder = Holder::Nobody;
        self.changed.notify_all();
    }
}

/// `poll`'s form of a timeout.
fn timespec(timeout: Option<Duration>) -> io::Result<Option<Timespec>> {
    timeout
        .map(|t| Timespec::try_from(t).map_err(|_| io::Error::other("timeout too long")))
        .transpose()
}

/// Waits at most `timeout` (`None`: without limit) until `fd` has something to read (or its
/// end); returns whether it has.
///
/// # Errors
/// `poll` failed.
pub(crate) fn readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout = timespec(timeout)?;
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, os::fd::AsFd, sync::Arc};

    #[test]
    fn the_standby_gives_the_turn_up_when_the_main_reader_wants_it() {
        let turn = Arc::new(ReadTurn::new(true).expect("turn"));
        let (data_rx, data_tx) = rustix::pipe::pipe().expect("pipe");
        let standby = {
            let turn = turn.clone();
            std::thread::spawn(move || {
                assert!(turn.standby_wait());
                turn.standby_poll(data_rx.as_fd(), None).expect("poll")
            })
        };
        assert!(turn.take(), "the main reader gets the turn");
        assert_eq!(standby.join().expect("standby"), Polled::GaveUp);
        drop(data_tx);
    }

    #[test]
    fn a_standby_with_buffered_frames_yields_to_a_waiting_main_reader_and_polls_with_a_limit() {
        let turn = Arc::new(ReadTurn::new(true).expect("turn"));
        assert!(turn.standby_wait());
        assert!(!turn.standby_yields(), "nobody wants it yet");
        let (data_rx, _data_tx) = rustix::pipe::pipe().expect("pipe");
        assert_eq!(
            turn.standby_poll(data_rx.as_fd(), Some(Duration::from_millis(1)))
                .expect("poll"),
            Polled::Timeout
        );
        let main = {
            let turn = turn.clone();
            std::thread::spawn(move || turn.take())
        };
        while !turn.standby_yields() {
            std::thread::yield_now();
        }
        assert!(
            main.join().expect("main reader"),
            "the main reader got the turn"
        );
        // The wake-up byte was taken with the turn: a later poll does not see it again.
        turn.release(true);
        assert!(turn.standby_wait());
        assert_eq!(
            turn.standby_poll(data_rx.as_fd(), Some(Duration::from_millis(1)))
                .expect("poll"),
            Polled::Timeout
        );
    }

    #[test]
    fn the_standby_takes_the_turn_only_after_the_main_reader_lingered() {
        let turn = Arc::new(ReadTurn::new(false).expect("turn"));
        assert!(turn.take());
        let started = Instant::now();
        let standby = {
            let turn = turn.clone();
            std::thread::spawn(move || {
                assert!(turn.standby_wait());
                Instant::now()
            })
        };
        turn.release(false);
        let took = standby.join().expect("standby");
        assert!(took.duration_since(started) >= LINGER);
    }

    #[test]
    fn an_urgent_release_and_a_close_reach_the_standby_and_the_main_reader() {
        let turn = Arc::new(ReadTurn::new(false).expect("turn"));
        assert!(turn.take());
        turn.release(true);
        assert!(turn.standby_wait(), "taken at once");
        turn.close();
        assert!(!turn.take(), "closed");
        assert!(!turn.standby_wait());
    }

    #[test]
    fn readable_sees_data_and_times_out_without_it() {
        let (rx, tx) = rustix::pipe::pipe().expect("pipe");
        assert!(!readable(rx.as_fd(), Some(Duration::from_millis(1))).expect("poll"));
        let mut tx = std::fs::File::from(tx);
        tx.write_all(b"x").expect("write");
        assert!(readable(rx.as_fd(), Some(Duration::ZERO)).expect("poll"));
    }
}
