//! Bounded waits for another thread's answer that look for it for a short while before they
//! sleep.
//!
//! On the two-CPU virtual machines the benchmarks ran on, a thread that sleeps on a channel is
//! woken on a CPU that went idle meanwhile, which costs 40–60 µs, several times what the work
//! it waited for took (BENCHMARKS.md). The steps of a load hand work to another thread and wait
//! for it: the manifest reader, then the plugin's own thread for its activation. Each takes
//! tens of microseconds, so the loading thread looks for the answer (offering the CPU to other
//! threads between looks) for up to [`PATIENCE`] before it sleeps.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

/// How long a loading step looks for an answer before it sleeps.
pub(crate) const PATIENCE: Duration = Duration::from_micros(200);

/// Waits at most `deadline` for a value on `rx`, looking for it for up to `patience` (never
/// longer than `deadline`) before it sleeps.
///
/// # Errors
/// [`RecvTimeoutError::Timeout`] after `deadline`; [`RecvTimeoutError::Disconnected`] when every
/// sender is gone and nothing is queued.
pub(crate) fn recv_patiently<T>(
    rx: &Receiver<T>,
    deadline: Duration,
    patience: Duration,
) -> Result<T, RecvTimeoutError> {
    let start = Instant::now();
    let looking = start + patience.min(deadline);
    loop {
        match rx.try_recv() {
            Ok(value) => return Ok(value),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        if Instant::now() >= looking {
            break;
        }
        std::thread::yield_now();
    }
    rx.recv_deadline(start + deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    #[test]
    fn an_answer_sent_later_is_received_after_the_patience_ran_out() {
        let (tx, rx) = bounded(1);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).expect("the receiver waits");
        });
        let got = recv_patiently(&rx, Duration::from_secs(10), Duration::from_micros(50));
        assert_eq!(got, Ok(7));
        sender.join().expect("sender");
    }

    #[test]
    fn the_deadline_bounds_the_wait_and_a_gone_sender_is_told() {
        let (tx, rx) = bounded::<u8>(1);
        let started = Instant::now();
        let got = recv_patiently(&rx, Duration::from_millis(30), PATIENCE);
        assert_eq!(got, Err(RecvTimeoutError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(30));
        drop(tx);
        let got = recv_patiently(&rx, Duration::from_secs(10), PATIENCE);
        assert_eq!(got, Err(RecvTimeoutError::Disconnected));
    }
}
