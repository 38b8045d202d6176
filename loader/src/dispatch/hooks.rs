//! Hooks (a waterfall over every handler, in priority order) and providers (the
//! highest-priority implementation of a named service).

use std::{sync::Arc, time::Duration};

use plugin_api::{ErrorKind, HookOutcome, Payload, PluginError};

use super::{Caller, Dispatcher};
use crate::{
    observe::recorder::RecordKind,
    runtime::{
        call::{mismatch, Answer, Call},
        slot::Slot,
    },
};

impl Dispatcher {
    /// Runs hook `name` as a waterfall: each handler gets the previous one's data.
    ///
    /// Policy: a veto stops the run and names the plugin; a handler that fails or panics also
    /// stops it, naming the plugin. No handlers: the data comes back unchanged.
    pub(crate) fn run_hook(
        &self,
        caller: &Caller<'_>,
        name: &str,
        mut data: Payload,
    ) -> Result<Payload, PluginError> {
        self.check_size(name, &data)?;
        caller.require(&format!("hook:run:{name}"))?;
        let handlers: Vec<Arc<Slot>> = self
            .routes
            .read()
            .hooks
            .get(name)
            .map(|l| l.iter().map(|r| r.slot.clone()).collect())
            .unwrap_or_default();
        let hook: Arc<str> = Arc::from(name);
        for slot in handlers {
            let outcome = self.call_slot(
                caller,
                &slot,
                (RecordKind::Hook, name),
                (self.timeout(None), None),
                Call::Hook {
                    hook: hook.clone(),
                    data,
                },
            );
            match outcome {
                Ok(Answer::Hook(HookOutcome::Continue(next))) => data = next,
                Ok(Answer::Hook(HookOutcome::Veto(reason))) => {
                    return Err(PluginError::new(
                        ErrorKind::Vetoed,
                        format!("hook {name} vetoed by {}: {reason}", slot.name),
                    ))
                }
                Ok(other) => return Err(mismatch("a hook", &other)),
                Err(e) => {
                    return Err(PluginError::new(
                        e.kind,
                        format!("hook {name} failed in plugin {}: {e}", slot.name),
                    ))
                }
            }
        }
        Ok(data)
    }

    /// Calls the highest-priority provider of `provider`.
    pub(crate) fn provider_call(
        &self,
        caller: &Caller<'_>,
        provider: &str,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        self.check_size(provider, &args)?;
        caller.require(&format!("provider:{provider}"))?;
        let slot = self
            .routes
            .read()
            .providers
            .get(provider)
            .and_then(|l| l.first())
            .map(|r| r.slot.clone())
            .ok_or_else(|| PluginError::not_found(format!("provider not found: {provider}")))?;
        self.call_slot(
            caller,
            &slot,
            (RecordKind::Provider, &format!("{provider}.{method}")),
            (self.timeout(timeout), None),
            Call::Provide {
                provider: Arc::from(provider),
                method: Arc::from(method),
                args,
            },
        )
        .and_then(Answer::into_payload)
    }
}
