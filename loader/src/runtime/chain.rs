//! The wait chain: which plugins' threads are blocked on the call being made now.
//!
//! A plugin's thread that waits on a call which needs its own thread would wait forever. Every
//! call carries the chain of threads blocked on it, and a call whose target is already in the
//! chain is refused as a cycle at once. A thread learns its chain from the work it runs:
//! [`invoke`](super::call::invoke) marks the thread busy for the length of each call into
//! plugin code, and the context reads the mark when the plugin calls back into the host.

use std::{cell::RefCell, sync::Arc};

/// The plugins whose dispatcher threads are blocked waiting on the current call, outermost
/// first. Empty (the common case: the host application calling) costs nothing to clone or share
/// between threads.
#[derive(Clone, Default, Debug)]
pub(crate) struct Chain(Option<Arc<Vec<Arc<str>>>>);

impl Chain {
    /// No blocked callers.
    pub fn empty() -> Chain {
        Chain(None)
    }

    /// The blocked callers, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().flat_map(|c| c.iter())
    }

    /// Whether `plugin` is blocked on this call.
    pub fn contains(&self, plugin: &str) -> bool {
        self.iter().any(|p| &**p == plugin)
    }

    /// This chain with `name` appended.
    pub fn with(&self, name: &Arc<str>) -> Chain {
        let mut v: Vec<Arc<str>> = self.iter().cloned().collect();
        v.push(name.clone());
        Chain(Some(Arc::new(v)))
    }
}

/// What the current thread is doing, when it is a plugin's dispatcher thread.
struct Current {
    /// The plugin whose thread this is (set once when the thread starts serving).
    plugin: Option<Arc<str>>,
    /// Whether plugin code is running now for a call, with its callers and work id.
    busy: Option<(Chain, u64)>,
}

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current {
            plugin: None,
            busy: None,
        })
    };
}

/// If the current thread is `plugin`'s thread running plugin code: the chain of blocked callers
/// including `plugin` itself, and the work id. Otherwise an empty chain and work 0.
pub(crate) fn current_chain(plugin: &str) -> (Chain, u64) {
    CURRENT.with(|c| {
        let c = c.borrow();
        match (&c.plugin, &c.busy) {
            (Some(name), Some((chain, work))) if &**name == plugin => (chain.with(name), *work),
            _ => (Chain::empty(), 0),
        }
    })
}

/// Marks this thread as `plugin`'s thread.
pub(crate) fn serve_as(plugin: &Arc<str>) {
    CURRENT.with(|c| c.borrow_mut().plugin = Some(plugin.clone()));
}

/// Runs `f` (plugin code) with the thread marked busy with work `work` for the callers `chain`.
pub(crate) fn with_current<R>(chain: Chain, work: u64, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.borrow_mut().busy.replace((chain, work)));
    let r = f();
    CURRENT.with(|c| c.borrow_mut().busy = previous);
    r
}
