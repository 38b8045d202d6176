//! How far a load has got, for whoever shows a progress bar: the host hands a [`LoadProgress`]
//! to the callback set with [`HostBuilder::on_progress`](crate::HostBuilder::on_progress)
//! before each file it takes up and once at the end of each stage.

use std::sync::Arc;

/// Which part of the work a [`LoadProgress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadStage {
    /// Files being checked, copied, opened and their manifests read
    /// ([`Host::load_dir`](crate::Host::load_dir) and every other load); `total` is the number
    /// of files.
    Loading,
    /// Plugins being activated, in dependency order; `total` is the number that admission let
    /// through.
    Activating,
    /// Files being examined by [`Host::diagnose`](crate::Host::diagnose), which activates
    /// nothing.
    Examining,
}

impl LoadStage {
    /// A verb for people: `loading`, `activating`, `examining`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadStage::Loading => "loading",
            LoadStage::Activating => "activating",
            LoadStage::Examining => "examining",
        }
    }
}

/// `done` of `total` items of a [`LoadStage`] are finished.
///
/// A stage starts with `done == 0` and ends with `done == total`, with one report in between
/// for each item as it is taken up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadProgress {
    /// What is being counted.
    pub stage: LoadStage,
    /// Items finished.
    pub done: usize,
    /// Items in this stage.
    pub total: usize,
}

/// The callback of [`HostBuilder::on_progress`](crate::HostBuilder::on_progress), or none.
#[derive(Clone, Default)]
pub(crate) struct ProgressHook(Option<Arc<dyn Fn(LoadProgress) + Send + Sync>>);

impl ProgressHook {
    /// A hook that calls `callback`.
    pub fn new(callback: impl Fn(LoadProgress) + Send + Sync + 'static) -> Self {
        ProgressHook(Some(Arc::new(callback)))
    }

    /// Tells the callback, if there is one, that `done` of `total` items of `stage` are
    /// finished.
    pub fn report(&self, stage: LoadStage, done: usize, total: usize) {
        if let Some(callback) = &self.0 {
            callback(LoadProgress { stage, done, total });
        }
    }
}

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressHook(set)"
        } else {
            "ProgressHook(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn reports_reach_the_callback_and_none_is_silent() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let hook = ProgressHook::new(move |p| into.lock().push(p));
        hook.report(LoadStage::Loading, 0, 2);
        hook.report(LoadStage::Loading, 2, 2);
        let seen = seen.lock();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1],
            LoadProgress {
                stage: LoadStage::Loading,
                done: 2,
                total: 2
            }
        );
        ProgressHook::default().report(LoadStage::Examining, 0, 1);
        assert_eq!(
            format!("{:?}", ProgressHook::default()),
            "ProgressHook(none)"
        );
    }
}
