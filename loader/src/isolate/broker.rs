//! The host's side of an isolated plugin's context calls: each [`HostRequest`] is answered by
//! the plugin's real context in the host, the same object an in-process instance of it would
//! hold. Capability checks, event source stamping, storage, quotas and deadlines are therefore
//! decided exactly as for an in-process plugin, and the child never sees more than the answer.

use plugin_api::{BatchOp, HostContextBox, PluginError};

use super::wire::{HostReply, HostRequest};

/// Runs `request` on the plugin's context `ctx` (on the calling thread, so a request made while
/// the host waits for the plugin's answer carries that call's callers, and cycles are refused
/// as in process).
pub(crate) fn serve(ctx: &HostContextBox, request: HostRequest) -> Result<HostReply, PluginError> {
    use HostRequest as R;
    match request {
        R::Emit { event_type, data } => ctx
            .emit(event_type.as_str().into(), data)
            .into_result()
            .map(HostReply::Id),
        R::EmitAndCollect {
            event_type,
            data,
            timeout_ms,
        } => ctx
            .emit_and_collect(event_type.as_str().into(), data, timeout_ms)
            .into_result()
            .map(|replies| {
                HostReply::Collected(
                    replies
                        .into_iter()
                        .map(|r| (r.plugin.into_string(), r.result.into_result()))
                        .collect(),
                )
            }),
        R::Subscribe(pattern) => ctx
            .subscribe(pattern.as_str().into())
            .into_result()
            .map(|()| HostReply::Unit),
        R::Unsubscribe(pattern) => ctx
            .unsubscribe(pattern.as_str().into())
            .into_result()
            .map(|()| HostReply::Unit),
        R::Execute {
            command,
            args,
            timeout_ms,
        } => ctx
            .execute(command.as_str().into(), args, timeout_ms)
            .into_result()
            .map(HostReply::Payload),
        R::SendTo { plugin, message } => ctx
            .send_to(plugin.as_str().into(), message)
            .into_result()
            .map(|()| HostReply::Unit),
        R::Request {
            plugin,
            message,
            timeout_ms,
        } => ctx
            .request(plugin.as_str().into(), message, timeout_ms)
            .into_result()
            .map(HostReply::Payload),
        R::Call {
            plugin,
            method,
            args,
            timeout_ms,
        } => ctx
            .call(
                plugin.as_str().into(),
                method.as_str().into(),
                args,
                timeout_ms,
            )
            .into_result()
            .map(HostReply::Payload),
        R::RunHook { name, data } => ctx
            .run_hook(name.as_str().into(), data)
            .into_result()
            .map(HostReply::Payload),
        R::ProviderCall {
            provider,
            method,
            args,
            timeout_ms,
        } => ctx
            .provider_call(
                provider.as_str().into(),
                method.as_str().into(),
                args,
                timeout_ms,
            )
            .into_result()
            .map(HostReply::Payload),
        R::StorageGet { scope, key } => ctx
            .storage_get(scope.into(), key.as_str().into())
            .into_result()
            .map(|v| HostReply::Maybe(v.into_option())),
        R::StorageSet { scope, key, value } => ctx
            .storage_set(scope.into(), key.as_str().into(), value)
            .into_result()
            .map(|()| HostReply::Unit),
        R::StorageDelete { scope, key } => ctx
            .storage_delete(scope.into(), key.as_str().into())
            .into_result()
            .map(HostReply::Bool),
        R::StorageScan {
            scope,
            start,
            end,
            limit,
        } => ctx
            .storage_scan(
                scope.into(),
                start.as_str().into(),
                end.as_str().into(),
                limit,
            )
            .into_result()
            .map(|rows| {
                HostReply::Entries(
                    rows.into_iter()
                        .map(|e| (e.key.into_string(), e.value))
                        .collect(),
                )
            }),
        R::StorageBatch { scope, ops } => ctx
            .storage_batch(
                scope.into(),
                ops.into_iter()
                    .map(|(key, value)| BatchOp {
                        key: key.into(),
                        value: value.into(),
                    })
                    .collect(),
            )
            .into_result()
            .map(|()| HostReply::Unit),
        R::Register(declaration) => ctx
            .register(declaration.as_str().into())
            .into_result()
            .map(HostReply::Id),
        R::Unregister(id) => ctx.unregister(id).into_result().map(|()| HostReply::Unit),
        R::Log { level, message } => {
            ctx.log(level, message.as_str().into());
            Ok(HostReply::Unit)
        }
        R::StartTimer {
            name,
            delay_ms,
            repeat,
        } => ctx
            .start_timer(name.as_str().into(), delay_ms, repeat)
            .into_result()
            .map(HostReply::Id),
        R::StopTimer(id) => {
            ctx.stop_timer(id);
            Ok(HostReply::Unit)
        }
    }
}
