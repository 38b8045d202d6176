//! The author-facing view of the host: a typed wrapper around the host context vtable.

use std::{sync::Arc, time::Duration};

use abi_stable::std_types::{RStr, RVec};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    abi::{HostContextBox, HostContext_TO},
    call::{millis, Caller, CancellationToken, Timer},
    error::PluginResult,
    payload::Payload,
    types::{BatchOp, Entry, StorageScope},
};

fn ms(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

/// What a plugin can ask of its host: events, commands, messages, RPC, hooks, providers,
/// storage, configuration.
///
/// Typed methods encode arguments with bincode and decode answers into the requested type;
/// the `*_payload` variants take and return raw [`Payload`]s. Every method that reaches another
/// plugin goes through the host, which checks the capability it needs and the deadline.
pub struct Context {
    // Shared with the plugin's timers and registrations, which end themselves through it when
    // dropped.
    pub(crate) inner: Arc<HostContextBox>,
    name: String,
    /// What this instance registered at run time, with the handlers (see [`Context::register_command`]).
    pub(crate) dynamic: std::sync::Arc<crate::dynamic::Handlers>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("plugin", &self.name)
            .finish()
    }
}

impl Context {
    /// Wraps the vtable the host handed over.
    pub fn new(inner: HostContextBox) -> Self {
        let name = inner.plugin_name().into_string();
        Context {
            inner: Arc::new(inner),
            name,
            dynamic: Arc::default(),
        }
    }

    /// The raw vtable, for operations not wrapped here.
    pub fn raw(&self) -> &HostContext_TO<'static, abi_stable::std_types::RBox<()>> {
        self.inner.as_ref()
    }

    /// This plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin-api version of the host (`1.0` for any host built before 1.1, which cannot
    /// say more).
    pub fn host_api_version(&self) -> String {
        self.inner.host_api_version().into_string()
    }

    /// Who made the call this handler is running, as the host stamped it (added in 1.1).
    ///
    /// `None` outside a handler (in `activate`, `deactivate` and the state handoff), on a thread
    /// other than the plugin's own, and on a host older than 1.1.
    pub fn caller(&self) -> Option<Caller> {
        self.inner
            .current_call()
            .into_option()
            .map(|stamp| Caller::from_stamp(&stamp))
    }

    /// Whether the caller of the call this handler is running stopped waiting for it (its
    /// deadline passed, the call it came from was cancelled), or the plugin is being
    /// deactivated (added in 1.1). A long handler checks it and returns early.
    pub fn is_cancelled(&self) -> bool {
        self.inner
            .current_call()
            .into_option()
            .is_some_and(|stamp| stamp.cancel.is_cancelled())
    }

    /// The cancellation token of the call this handler is running, to hand to other threads
    /// (added in 1.1); outside a call, one that is never cancelled.
    pub fn cancellation(&self) -> CancellationToken {
        self.inner
            .current_call()
            .into_option()
            .map_or_else(CancellationToken::never, |stamp| stamp.cancel)
    }

    /// Starts a timer that delivers event `name` to this plugin every `interval`, on the
    /// plugin's own thread through its event queue, like any event (added in 1.1). The plugin
    /// handles it in `on_event` (or a handler registered for `name`); no subscription or
    /// capability is needed, and no other plugin sees it. The event's source is `host`.
    ///
    /// The timer runs until the returned [`Timer`] is dropped or the plugin is deactivated.
    /// A tick that comes while the previous one is still queued is still queued (a slow
    /// plugin gets them back to back; a full queue drops the oldest, as for any event).
    ///
    /// # Errors
    /// Invalid input for an empty or malformed name; unsupported on a host older than 1.1;
    /// cancelled once the plugin is being deactivated.
    pub fn every(&self, interval: Duration, name: &str) -> PluginResult<Timer> {
        self.timer(name, interval, true)
    }

    /// Starts a timer that delivers event `name` to this plugin once, after `delay` (added in
    /// 1.1). As [`Context::every`] otherwise.
    ///
    /// # Errors
    /// As [`Context::every`].
    pub fn after(&self, delay: Duration, name: &str) -> PluginResult<Timer> {
        self.timer(name, delay, false)
    }

    fn timer(&self, name: &str, delay: Duration, repeat: bool) -> PluginResult<Timer> {
        let id = self
            .inner
            .start_timer(RStr::from_str(name), millis(delay), repeat)
            .into_result()?;
        Ok(Timer::new(self.inner.clone(), id))
    }

    /// Publishes event `event_type` with `data` (bincode); fire-and-forget. Returns the event id.
    ///
    /// # Errors
    /// Permission denied when `emit:<type>` is not declared, or a codec error.
    pub fn emit<T: Serialize + ?Sized>(&self, event_type: &str, data: &T) -> PluginResult<u64> {
        self.emit_payload(event_type, Payload::encode(data)?)
    }

    /// Publishes an event with a ready payload.
    ///
    /// # Errors
    /// As [`Context::emit`].
    pub fn emit_payload(&self, event_type: &str, data: Payload) -> PluginResult<u64> {
        self.inner.emit(RStr::from_str(event_type), data).into()
    }

    /// Publishes an event and collects every subscriber's answer (or error), by plugin name.
    ///
    /// # Errors
    /// Permission denied when `emit:<type>` is not declared. Subscribers' failures are in the
    /// returned list, not errors of the call.
    pub fn emit_and_collect(
        &self,
        event_type: &str,
        data: Payload,
        timeout: Option<Duration>,
    ) -> PluginResult<Vec<(String, PluginResult<Payload>)>> {
        let replies: RVec<_> = self
            .inner
            .emit_and_collect(RStr::from_str(event_type), data, ms(timeout))
            .into_result()?;
        Ok(replies
            .into_iter()
            .map(|r| (r.plugin.into_string(), r.result.into_result()))
            .collect())
    }

    /// Subscribes to `pattern` at run time (it must be declared in the manifest).
    ///
    /// # Errors
    /// Permission denied when `subscribe:<pattern>` is not declared.
    pub fn subscribe(&self, pattern: &str) -> PluginResult<()> {
        self.inner.subscribe(RStr::from_str(pattern)).into()
    }

    /// Removes a subscription.
    ///
    /// # Errors
    /// Not found when the plugin had no such subscription.
    pub fn unsubscribe(&self, pattern: &str) -> PluginResult<()> {
        self.inner.unsubscribe(RStr::from_str(pattern)).into()
    }

    /// Runs `<plugin>:<command>` with typed arguments and decodes its answer.
    ///
    /// # Errors
    /// Not found, permission denied (`call:<command>`), timeout, cancelled, queue full, call
    /// cycle, the handler's own error, or a codec error.
    pub fn execute<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        command: &str,
        args: &A,
    ) -> PluginResult<R> {
        self.execute_payload(command, Payload::encode(args)?, None)?
            .decode()
    }

    /// Runs a command with a raw payload and an optional timeout.
    ///
    /// # Errors
    /// As [`Context::execute`].
    pub fn execute_payload(
        &self,
        command: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> PluginResult<Payload> {
        self.inner
            .execute(RStr::from_str(command), args, ms(timeout))
            .into()
    }

    /// Sends a message to `plugin` without waiting for an answer.
    ///
    /// # Errors
    /// Not found, permission denied (`message:<plugin>`), queue full.
    pub fn send_to<T: Serialize + ?Sized>(&self, plugin: &str, message: &T) -> PluginResult<()> {
        self.inner
            .send_to(RStr::from_str(plugin), Payload::encode(message)?)
            .into()
    }

    /// Sends a message to `plugin` and waits for its reply (request-reply).
    ///
    /// # Errors
    /// As [`Context::send_to`], plus timeout and the handler's own error.
    pub fn request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        plugin: &str,
        message: &T,
        timeout: Option<Duration>,
    ) -> PluginResult<R> {
        let reply: Payload = self
            .inner
            .request(
                RStr::from_str(plugin),
                Payload::encode(message)?,
                ms(timeout),
            )
            .into_result()?;
        reply.decode()
    }

    /// Calls RPC `method` on `plugin`.
    ///
    /// # Errors
    /// As [`Context::request`]; not found when the plugin has no such method.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        plugin: &str,
        method: &str,
        args: &A,
    ) -> PluginResult<R> {
        self.call_payload(plugin, method, Payload::encode(args)?, None)?
            .decode()
    }

    /// Calls an RPC method with a raw payload.
    ///
    /// # Errors
    /// As [`Context::call`].
    pub fn call_payload(
        &self,
        plugin: &str,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> PluginResult<Payload> {
        self.inner
            .call(
                RStr::from_str(plugin),
                RStr::from_str(method),
                args,
                ms(timeout),
            )
            .into()
    }

    /// Runs hook `name` over `data` and returns the data as the last handler left it.
    ///
    /// # Errors
    /// [`ErrorKind::Vetoed`](crate::ErrorKind::Vetoed) naming the vetoing plugin and its
    /// reason; permission denied (`hook:run:<name>`); a failing handler's error.
    pub fn run_hook<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        data: &T,
    ) -> PluginResult<T> {
        let out: Payload = self
            .inner
            .run_hook(RStr::from_str(name), Payload::encode(data)?)
            .into_result()?;
        out.decode()
    }

    /// Calls `method` of provider `provider`.
    ///
    /// # Errors
    /// Not found when nobody provides it; permission denied (`provider:<name>`); the
    /// provider's own error.
    pub fn provider_call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        provider: &str,
        method: &str,
        args: &A,
    ) -> PluginResult<R> {
        let out: Payload = self
            .inner
            .provider_call(
                RStr::from_str(provider),
                RStr::from_str(method),
                Payload::encode(args)?,
                0,
            )
            .into_result()?;
        out.decode()
    }

    /// This plugin's own storage namespace.
    pub fn storage(&self) -> Storage<'_> {
        Storage {
            ctx: self,
            scope: StorageScope::Plugin,
        }
    }

    /// The shared storage namespace (needs `storage:shared:read` / `storage:shared:write`).
    pub fn shared_storage(&self) -> Storage<'_> {
        Storage {
            ctx: self,
            scope: StorageScope::Shared,
        }
    }

    /// This plugin's configuration table from the host config, decoded into `T`.
    ///
    /// # Errors
    /// A codec error when the table does not fit `T`.
    pub fn config<T: DeserializeOwned>(&self) -> PluginResult<T> {
        self.inner.config().decode()
    }
}

/// One storage namespace as seen by a plugin. Values are serde-encoded with bincode.
#[derive(Debug, Clone, Copy)]
pub struct Storage<'a> {
    ctx: &'a Context,
    scope: StorageScope,
}

impl Storage<'_> {
    /// Reads and decodes `key`; `None` if absent.
    ///
    /// # Errors
    /// Invalid key, permission denied, storage failure, or a codec error.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> PluginResult<Option<T>> {
        let value: Option<Payload> = self
            .ctx
            .inner
            .storage_get(self.scope, RStr::from_str(key))
            .into_result()?
            .into_option();
        value.map(|v| v.decode()).transpose()
    }

    /// Encodes and writes `value` under `key`.
    ///
    /// # Errors
    /// Invalid key, permission denied, quota exceeded (nothing is written), storage failure.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> PluginResult<()> {
        self.ctx
            .inner
            .storage_set(self.scope, RStr::from_str(key), Payload::encode(value)?)
            .into()
    }

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    /// Invalid key, permission denied, storage failure.
    pub fn delete(&self, key: &str) -> PluginResult<bool> {
        self.ctx
            .inner
            .storage_delete(self.scope, RStr::from_str(key))
            .into()
    }

    /// Entries with `start <= key < end` (`end` empty: unbounded), at most `limit` (0: all).
    /// Needs the `database` capability.
    ///
    /// # Errors
    /// Permission denied, storage failure.
    pub fn scan(&self, start: &str, end: &str, limit: u32) -> PluginResult<Vec<Entry>> {
        let rows: RVec<Entry> = self
            .ctx
            .inner
            .storage_scan(
                self.scope,
                RStr::from_str(start),
                RStr::from_str(end),
                limit,
            )
            .into_result()?;
        Ok(rows.into_vec())
    }

    /// Entries whose key starts with `prefix`. Needs the `database` capability.
    ///
    /// # Errors
    /// As [`Storage::scan`].
    pub fn scan_prefix(&self, prefix: &str) -> PluginResult<Vec<Entry>> {
        let end = prefix_end(prefix);
        self.scan(prefix, &end, 0)
    }

    /// Writes (`Some`) and deletes (`None`) several keys atomically. Needs `database`.
    ///
    /// # Errors
    /// Invalid key, permission denied, quota exceeded (nothing is written), storage failure.
    pub fn batch(&self, ops: Vec<(String, Option<Payload>)>) -> PluginResult<()> {
        let ops: RVec<BatchOp> = ops
            .into_iter()
            .map(|(key, value)| BatchOp {
                key: key.into(),
                value: value.into(),
            })
            .collect();
        self.ctx.inner.storage_batch(self.scope, ops).into()
    }
}

/// The smallest string greater than every string starting with `prefix` (empty: unbounded).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_string() {
        assert_eq!(prefix_end("note:"), "note;");
        assert_eq!(prefix_end(""), "");
        assert!("note:zzz" < prefix_end("note:").as_str());
    }
}
