//! The wait chain: which plugins' threads are blocked on the call being made now.
//!
//! A plugin's thread that waits on a call which needs its own thread would wait forever. Every
//! call carries the chain of threads blocked on it, and a call whose target is already in the
//! chain is refused as a cycle at once. A thread learns its chain from the work it runs:
//! [`invoke`](super::call::invoke) marks the thread busy for the length of each call into
//! plugin code, and the context reads the mark when the plugin calls back into the host.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
};

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

thread_local! {
    /// The plugin whose thread this is (set once when the thread starts serving).
    static PLUGIN: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    /// The work id while plugin code runs for a call. Plain data, so that marking the thread
    /// busy around every call costs a load and a store, without the lazy set-up of a
    /// thread-local that needs dropping.
    static WORK: Cell<Option<u64>> = const { Cell::new(None) };
    /// Whether [`CHAIN`] holds a non-empty chain; while it does not, [`with_current`] leaves it
    /// alone (the common case: the host application calling).
    static HAS_CHAIN: Cell<bool> = const { Cell::new(false) };
    /// The callers blocked on the call being run, when there are any.
    static CHAIN: RefCell<Chain> = const { RefCell::new(Chain(None)) };
}

/// If the current thread is `plugin`'s thread running plugin code: the chain of blocked callers
/// including `plugin` itself, and the work id. Otherwise an empty chain and work 0.
pub(crate) fn current_chain(plugin: &str) -> (Chain, u64) {
    let Some(work) = WORK.get() else {
        return (Chain::empty(), 0);
    };
    PLUGIN.with(|p| match &*p.borrow() {
        Some(name) if &**name == plugin => {
            let chain = if HAS_CHAIN.get() {
                CHAIN.with(|c| c.borrow().with(name))
            } else {
                Chain::empty().with(name)
            };
            (chain, work)
        }
        _ => (Chain::empty(), 0),
    })
}

/// Marks this thread as `plugin`'s thread.
pub(crate) fn serve_as(plugin: &Arc<str>) {
    PLUGIN.with(|p| *p.borrow_mut() = Some(plugin.clone()));
}

/// Runs `f` (plugin code) with the thread marked busy with work `work` for the callers `chain`.
pub(crate) fn with_current<R>(chain: Chain, work: u64, f: impl FnOnce() -> R) -> R {
    let previous_work = WORK.replace(Some(work));
    let previous_chain = (chain.0.is_some() || HAS_CHAIN.get()).then(|| {
        HAS_CHAIN.set(chain.0.is_some());
        CHAIN.with(|c| c.replace(chain))
    });
    let r = f();
    WORK.set(previous_work);
    if let Some(previous) = previous_chain {
        HAS_CHAIN.set(previous.0.is_some());
        CHAIN.with(|c| *c.borrow_mut() = previous);
    }
    r
}
