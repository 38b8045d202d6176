//! The instance a plugin's thread holds, and the lifecycle work done on that thread: making
//! and activating an instance, and carrying out the orders to stop, swap in a new version
//! (state handoff), restart after a fault, and retire the old instance within its grace.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, Receiver};
use plugin_api::{ErrorKind, PluginError, PluginInstanceBox};

use super::{
    call::{Answer, Call, Invoker},
    chain::{serve_as, with_current, Chain},
    slot::{Control, Fresh, Seal, SendAhead, Slot},
};
use crate::observe::recorder::{Label, Recorder};

/// The instance a thread serves, and the seal of its context.
pub(super) struct Live {
    pub(super) instance: Option<PluginInstanceBox>,
    pub(super) seal: Seal,
    /// Set for an instance in a child process: runs of queued events go to it in one write.
    pub(super) ahead: Option<Arc<dyn SendAhead>>,
}

/// Most events handed to an isolated instance in one run ([`SendAhead`]). Large enough that a
/// How long a thread waits for the supervisor's order after a fault before it goes on.
const ORDERS_WAIT: Duration = Duration::from_secs(10);

/// Makes an instance from `fresh` (the plugin's constructor runs) on the calling thread.
pub(super) fn instantiate(slot: &Slot, fresh: Fresh) -> Result<Live, PluginError> {
    let Fresh {
        module,
        context,
        seal,
        remote,
    } = fresh;
    slot.set_remote(remote.is_some());
    let made = with_current(Chain::empty(), 0, || match remote {
        Some(make) => make(context).map(|r| (r.instance, Some(r.ahead))),
        None => match module {
            Some(module) => (module.instantiate())(context)
                .into_result()
                .map(|instance| (instance, None)),
            None => Err(PluginError::failed(
                "its library is not open in the host, and it has no worker process",
            )),
        },
    });
    match made {
        Ok((instance, ahead)) => Ok(Live {
            instance: Some(instance),
            seal,
            ahead,
        }),
        Err(e) => {
            seal.retire();
            Err(PluginError::new(
                e.kind,
                format!("plugin {}: instantiate: {e}", slot.name),
            ))
        }
    }
}

/// A lifecycle call (activate, deactivate, state handoff, drop) on the current thread.
pub(super) fn lifecycle_call(
    invoker: &mut Invoker<'_>,
    live: &mut Live,
    call: Call,
) -> Result<Answer, PluginError> {
    invoker.invoke(
        &mut live.instance,
        call,
        (Chain::empty(), 0, Instant::now()),
        None,
        None,
    )
}

/// What the dispatcher thread takes next.
/// After a panic: take no more work until the supervisor says what to do (restart with a fresh
/// instance, or stop), so nothing reaches the faulted instance. Returns whether to exit.
pub(super) fn await_orders(
    slot: &Arc<Slot>,
    live: &mut Live,
    recorder: &Arc<Recorder>,
    plugin: &Label,
    grace: Duration,
) -> bool {
    match slot.control_rx.recv_timeout(ORDERS_WAIT) {
        Ok(order) => obey(slot, live, order, recorder, plugin, grace),
        // No supervisor answer (the host is going away): go on with what we have.
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => true,
    }
}

/// Carries out an order; returns whether the thread must exit.
pub(super) fn obey(
    slot: &Arc<Slot>,
    live: &mut Live,
    order: Control,
    recorder: &Arc<Recorder>,
    plugin: &Label,
    grace: Duration,
) -> bool {
    let name = &slot.name;
    match order {
        Control::Stop { done } => {
            let cancelled = slot.cancel_queued();
            if cancelled > 0 {
                log::info!(
                    "plugin {name}: {cancelled} queued calls and events cancelled at deactivation"
                );
            }
            let mut invoker = Invoker::new(slot, recorder, plugin);
            let result = lifecycle_call(&mut invoker, live, Call::Deactivate).map(|_| ());
            let _ = lifecycle_call(&mut invoker, live, Call::Drop);
            live.seal.retire();
            let _ = done.send(result);
            true
        }
        Control::Swap {
            next,
            from_version,
            done,
        } => {
            let result = swap(slot, live, *next, &from_version, (recorder, plugin, grace));
            let _ = done.send(result);
            false
        }
        Control::Restart { next, done } => {
            // The faulted instance's state may be what faulted: no handoff.
            let old = std::mem::replace(
                live,
                Live {
                    instance: None,
                    seal: Seal::default(),
                    ahead: None,
                },
            );
            retire(slot, old, recorder, grace);
            let result = instantiate(slot, *next).and_then(|mut fresh| {
                let mut invoker = Invoker::new(slot, recorder, plugin);
                let activated = lifecycle_call(&mut invoker, &mut fresh, Call::Activate);
                drop(invoker);
                *live = fresh;
                activated.map(|_| ())
            });
            let _ = done.send(result);
            false
        }
    }
}

/// Hot reload on the plugin's thread: makes the new instance, moves the old one's saved state
/// into it and activates it. On success the old instance is retired; on error it stays (having
/// only saved state, it stays active).
fn swap(
    slot: &Arc<Slot>,
    live: &mut Live,
    next: Fresh,
    from_version: &str,
    (recorder, plugin, grace): (&Arc<Recorder>, &Label, Duration),
) -> Result<(), PluginError> {
    let name = &slot.name;
    let mut fresh = instantiate(slot, next)?;
    let mut invoker = Invoker::new(slot, recorder, plugin);
    let state = match lifecycle_call(&mut invoker, live, Call::SaveState) {
        Ok(Answer::State(state)) => state,
        Ok(_) => None,
        Err(e) => {
            log::warn!("plugin {name}: save_state failed, the new instance starts fresh: {e}");
            None
        }
    };
    if let Some(state) = state {
        let restore = Call::RestoreState {
            state,
            from_version: from_version.to_owned(),
        };
        if let Err(e) = lifecycle_call(&mut invoker, &mut fresh, restore) {
            log::warn!("plugin {name}: restore_state failed, the new instance starts fresh: {e}");
        }
    }
    if let Err(e) = lifecycle_call(&mut invoker, &mut fresh, Call::Activate) {
        let _ = lifecycle_call(&mut invoker, &mut fresh, Call::Drop);
        fresh.seal.retire();
        return Err(e);
    }
    drop(invoker);
    let old = std::mem::replace(live, fresh);
    retire(slot, old, recorder, grace);
    Ok(())
}

/// Deactivates and drops an instance that is being replaced, on a thread of its own, waiting at
/// most `grace` for it: an old instance whose `deactivate` never returns is left behind
/// (counted) and the plugin's thread goes on with the new one.
fn retire(slot: &Arc<Slot>, old: Live, recorder: &Arc<Recorder>, grace: Duration) {
    if old.instance.is_none() {
        old.seal.retire();
        return;
    }
    let seal = old.seal.clone();
    let (done_tx, done_rx) = bounded::<Result<(), PluginError>>(1);
    let thread_slot = slot.clone();
    let thread_recorder = recorder.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("retire-{}", slot.name))
        .spawn(move || {
            let mut old = old;
            serve_as(&thread_slot.name);
            let plugin = Label::new(&thread_slot.name);
            let mut invoker = Invoker::new(&thread_slot, &thread_recorder, &plugin);
            let result = lifecycle_call(&mut invoker, &mut old, Call::Deactivate).map(|_| ());
            let _ = lifecycle_call(&mut invoker, &mut old, Call::Drop);
            old.seal.retire();
            let _ = done_tx.send(result);
        });
    let name = &slot.name;
    let result = match spawned {
        Ok(_) => done_rx.recv_timeout(grace).unwrap_or_else(|_| {
            slot.detach();
            Err(PluginError::new(
                ErrorKind::Timeout,
                format!(
                    "it did not return within {} ms; its thread is left running (threads cannot be killed)",
                    grace.as_millis()
                ),
            ))
        }),
        Err(e) => Err(PluginError::failed(format!("cannot start a thread to retire the old instance: {e}"))),
    };
    // Whatever happened, the old instance's context takes no more calls.
    seal.retire();
    if let Err(e) = result {
        let text = format!("plugin {name}: the old instance's deactivate failed: {e}");
        log::warn!("{text}");
        *slot.last_error.lock() = Some(text);
    }
}

/// How long to wait for a stopping plugin thread.
pub(crate) fn wait_done(
    done: &Receiver<Result<(), PluginError>>,
    grace: Duration,
) -> Result<(), PluginError> {
    match done.recv_timeout(grace) {
        Ok(r) => r,
        Err(_) => Err(PluginError::new(
            ErrorKind::Timeout,
            format!(
                "did not finish within {} ms; its thread is left running (threads cannot be killed)",
                grace.as_millis()
            ),
        )),
    }
}
