//! The host side of the context vtable: one per plugin instance, bound to the plugin's identity
//! and granted capabilities.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Weak},
    time::Duration,
};

use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use plugin_api::{
    BatchOp, CallStamp, CollectedReply, Entry, ErrorKind, HostContext, Manifest, Payload,
    PluginError, RegistrationDecl, StorageScope,
};

use crate::{
    dispatch::{Caller, Dispatcher, Registrant},
    runtime::{
        chain::current_chain,
        slot::{Seal, Slot},
        stamp,
        timer::TimerTarget,
    },
    storage::Namespace,
};

/// What a plugin's context knows about it.
pub(crate) struct PluginContext {
    pub dispatcher: Weak<Dispatcher>,
    pub name: Arc<str>,
    pub granted: Arc<[String]>,
    pub config: Payload,
    /// Retired when the instance this context was made for ends.
    pub seal: Seal,
    /// The instance's slot and manifest, for registration at run time; `None` for a context
    /// the application drives itself.
    pub owner: Option<Owner>,
}

/// What registration at run time needs to know of a context's instance.
pub(crate) struct Owner {
    pub slot: Weak<Slot>,
    pub manifest: Arc<Manifest>,
}

fn timeout(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn storage_error(e: crate::error::StorageError) -> PluginError {
    use crate::error::StorageError as S;
    let kind = match &e {
        S::InvalidKey { .. } => ErrorKind::InvalidInput,
        S::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
        _ => ErrorKind::Storage,
    };
    PluginError::new(kind, e.to_string())
}

impl PluginContext {
    /// Runs a host operation for this plugin. Host code must never unwind into the plugin
    /// (that would abort), so panics are caught here too.
    fn with<T>(
        &self,
        f: impl FnOnce(&Dispatcher, &Caller<'_>) -> Result<T, PluginError>,
    ) -> RResult<T, PluginError> {
        if self.seal.is_retired() {
            return RResult::RErr(PluginError::new(
                ErrorKind::Cancelled,
                format!(
                    "plugin {}'s context was retired: the instance it was made for was deactivated, replaced or restarted, and its calls are refused",
                    self.name
                ),
            ));
        }
        let Some(host) = self.dispatcher.upgrade() else {
            return RResult::RErr(PluginError::new(
                ErrorKind::Cancelled,
                "the host is shutting down",
            ));
        };
        let (chain, work) = current_chain(&self.name);
        let caller = Caller {
            name: &self.name,
            granted: Some(&self.granted),
            chain,
            work,
        };
        match catch_unwind(AssertUnwindSafe(|| f(&host, &caller))) {
            Ok(r) => r.into(),
            Err(_) => RResult::RErr(PluginError::new(
                ErrorKind::Failed,
                format!("the host failed while serving plugin {}", self.name),
            )),
        }
    }

    fn namespace(
        &self,
        caller: &Caller<'_>,
        scope: StorageScope,
        write: bool,
    ) -> Result<Namespace, PluginError> {
        match scope {
            StorageScope::Plugin => Ok(Namespace::Plugin(self.name.to_string())),
            StorageScope::Shared => {
                caller.require(if write {
                    "storage:shared:write"
                } else {
                    "storage:shared:read"
                })?;
                Ok(Namespace::Shared)
            }
        }
    }
}

impl HostContext for PluginContext {
    fn plugin_name(&self) -> RString {
        RString::from(&*self.name)
    }

    fn emit(&self, event_type: RStr<'_>, data: Payload) -> RResult<u64, PluginError> {
        self.with(|h, c| h.emit(c, event_type.as_str(), data))
    }

    fn emit_and_collect(
        &self,
        event_type: RStr<'_>,
        data: Payload,
        timeout_ms: u64,
    ) -> RResult<RVec<CollectedReply>, PluginError> {
        self.with(|h, c| {
            let replies = h.emit_and_collect(c, event_type.as_str(), data, timeout(timeout_ms))?;
            Ok(replies
                .into_iter()
                .map(|(plugin, result)| CollectedReply {
                    plugin: plugin.into(),
                    result: result.into(),
                })
                .collect())
        })
    }

    fn subscribe(&self, pattern: RStr<'_>) -> RResult<(), PluginError> {
        self.with(|h, c| h.subscribe_plugin(c, pattern.as_str()))
    }

    fn unsubscribe(&self, pattern: RStr<'_>) -> RResult<(), PluginError> {
        self.with(|h, c| h.unsubscribe_plugin(c, pattern.as_str()))
    }

    fn execute(
        &self,
        command: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        self.with(|h, c| h.execute(c, command.as_str(), args, timeout(timeout_ms)))
    }

    fn send_to(&self, plugin: RStr<'_>, message: Payload) -> RResult<(), PluginError> {
        self.with(|h, c| h.message(c, plugin.as_str(), "", message, None).map(|_| ()))
    }

    fn request(
        &self,
        plugin: RStr<'_>,
        message: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        self.with(|h, c| h.message(c, plugin.as_str(), "", message, Some(timeout(timeout_ms))))
    }

    fn call(
        &self,
        plugin: RStr<'_>,
        method: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        self.with(|h, c| {
            if method.is_empty() {
                return Err(PluginError::invalid("rpc method name must not be empty"));
            }
            h.message(
                c,
                plugin.as_str(),
                method.as_str(),
                args,
                Some(timeout(timeout_ms)),
            )
        })
    }

    fn run_hook(&self, name: RStr<'_>, data: Payload) -> RResult<Payload, PluginError> {
        self.with(|h, c| h.run_hook(c, name.as_str(), data))
    }

    fn provider_call(
        &self,
        provider: RStr<'_>,
        method: RStr<'_>,
        args: Payload,
        timeout_ms: u64,
    ) -> RResult<Payload, PluginError> {
        self.with(|h, c| {
            h.provider_call(
                c,
                provider.as_str(),
                method.as_str(),
                args,
                timeout(timeout_ms),
            )
        })
    }

    fn storage_get(
        &self,
        scope: StorageScope,
        key: RStr<'_>,
    ) -> RResult<ROption<Payload>, PluginError> {
        self.with(|h, c| {
            let ns = self.namespace(c, scope, false)?;
            h.store()
                .get(&ns, key.as_str())
                .map(ROption::from)
                .map_err(storage_error)
        })
    }

    fn storage_set(
        &self,
        scope: StorageScope,
        key: RStr<'_>,
        value: Payload,
    ) -> RResult<(), PluginError> {
        self.with(|h, c| {
            let ns = self.namespace(c, scope, true)?;
            h.store()
                .set(&ns, key.as_str(), &value)
                .map_err(storage_error)
        })
    }

    fn storage_delete(&self, scope: StorageScope, key: RStr<'_>) -> RResult<bool, PluginError> {
        self.with(|h, c| {
            let ns = self.namespace(c, scope, true)?;
            h.store().delete(&ns, key.as_str()).map_err(storage_error)
        })
    }

    fn storage_scan(
        &self,
        scope: StorageScope,
        start: RStr<'_>,
        end: RStr<'_>,
        limit: u32,
    ) -> RResult<RVec<Entry>, PluginError> {
        self.with(|h, c| {
            c.require("database")?;
            let ns = self.namespace(c, scope, false)?;
            let rows = h
                .store()
                .scan(&ns, start.as_str(), end.as_str(), limit)
                .map_err(storage_error)?;
            Ok(rows
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.into(),
                    value,
                })
                .collect())
        })
    }

    fn storage_batch(&self, scope: StorageScope, ops: RVec<BatchOp>) -> RResult<(), PluginError> {
        self.with(|h, c| {
            c.require("database")?;
            let ns = self.namespace(c, scope, true)?;
            let ops: Vec<(String, Option<Payload>)> = ops
                .into_iter()
                .map(|op| (op.key.into_string(), op.value.into_option()))
                .collect();
            h.store().batch(&ns, &ops).map_err(storage_error)
        })
    }

    fn config(&self) -> Payload {
        self.config.clone()
    }

    fn log(&self, level: u8, message: RStr<'_>) {
        let level = match level {
            1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Info,
            4 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        let logger = log::logger();
        let metadata = log::Metadata::builder()
            .level(level)
            .target(&self.name)
            .build();
        if logger.enabled(&metadata) {
            logger.log(
                &log::Record::builder()
                    .metadata(metadata)
                    .args(format_args!("{message}"))
                    .build(),
            );
        }
    }

    fn log_max_level(&self) -> u8 {
        log::max_level() as u8
    }

    // ---- added in 1.1 ------------------------------------------------------------------------

    fn register(&self, declaration: RStr<'_>) -> RResult<u64, PluginError> {
        self.with(|h, _| {
            let decl: RegistrationDecl =
                serde_json::from_str(declaration.as_str()).map_err(|e| {
                    PluginError::invalid(format!(
                        "plugin {}: the registration does not read: {e}",
                        self.name
                    ))
                })?;
            let owner = self.owner.as_ref().ok_or_else(|| {
                PluginError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "plugin {}'s context belongs to no running instance and cannot register",
                        self.name
                    ),
                )
            })?;
            let slot = owner.slot.upgrade().ok_or_else(|| {
                PluginError::new(
                    ErrorKind::Cancelled,
                    format!("plugin {} is no longer running", self.name),
                )
            })?;
            h.register(
                &Registrant {
                    slot: &slot,
                    manifest: &owner.manifest,
                    instance: self.seal.id(),
                },
                decl,
            )
        })
    }

    fn unregister(&self, id: u64) -> RResult<(), PluginError> {
        self.with(|h, _| h.unregister(&self.name, id))
    }

    fn host_api_version(&self) -> RString {
        RString::from(plugin_api::API_VERSION)
    }

    fn current_call(&self) -> ROption<CallStamp> {
        // Only the plugin's own thread, during a call, has a stamp: the one `invoke` set.
        stamp::current().into()
    }

    fn start_timer(
        &self,
        name: RStr<'_>,
        delay_ms: u64,
        repeat: bool,
    ) -> RResult<u64, PluginError> {
        self.with(|h, _| {
            let Some(owner) = &self.owner else {
                return Err(PluginError::new(
                    ErrorKind::Unsupported,
                    format!("plugin {}: a standalone context has no timers", self.name),
                ));
            };
            let target = TimerTarget {
                slot: owner.slot.clone(),
                seal: self.seal.clone(),
            };
            h.timers().start(
                target,
                name.as_str(),
                Duration::from_millis(delay_ms),
                repeat,
            )
        })
    }

    fn stop_timer(&self, id: u64) {
        if let Some(host) = self.dispatcher.upgrade() {
            host.timers().stop(id);
        }
    }
}
