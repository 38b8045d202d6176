//! Direct messages (fire and forget), request-reply and RPC: calls addressed to one plugin by
//! name, which must say `accepts_messages` in its manifest.

use std::time::Duration;

use plugin_api::{CancellationToken, ErrorKind, Message, Payload, PluginError};

use super::{Caller, Dispatcher};
use crate::{
    observe::recorder::{Label, RecordKind},
    runtime::{
        call::{Answer, Call},
        chain::Chain,
        slot::{Job, Slot},
    },
};

impl Dispatcher {
    fn message_slot(
        &self,
        caller: &Caller<'_>,
        plugin: &str,
    ) -> Result<std::sync::Arc<Slot>, PluginError> {
        caller.require(&format!("message:{plugin}"))?;
        let reach = self.plugin_slot(plugin)?;
        if !reach.accepts_messages {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                format!("plugin {plugin} does not accept messages (its manifest does not say accepts_messages)"),
            ));
        }
        Ok(reach.slot)
    }

    /// Sends a message; with `wait`, waits for the reply (request-reply / RPC).
    pub(crate) fn message(
        &self,
        caller: &Caller<'_>,
        plugin: &str,
        method: &str,
        payload: Payload,
        wait: Option<Option<Duration>>,
    ) -> Result<Payload, PluginError> {
        self.check_size(plugin, &payload)?;
        let slot = match self.message_slot(caller, plugin) {
            Ok(slot) => slot,
            Err(e) => {
                if wait.is_none() && e.kind != ErrorKind::PermissionDenied {
                    // Fire-and-forget to a plugin that is gone: nobody else will hear of it.
                    self.dead_message(caller, plugin, &e);
                }
                return Err(e);
            }
        };
        let message = Message {
            id: self.next_id(),
            from: caller.name.into(),
            method: method.into(),
            payload,
            wants_reply: wait.is_some(),
        };
        let (kind, name) = if method.is_empty() {
            (RecordKind::Message, format!("#{} to {plugin}", message.id))
        } else {
            (RecordKind::Rpc, format!("{plugin}.{method}"))
        };
        match wait {
            Some(timeout) => self
                .call_slot(
                    caller,
                    &slot,
                    (kind, &name),
                    (self.timeout(timeout), None),
                    Call::Message(Box::new(message)),
                )
                .and_then(Answer::into_payload),
            None => {
                let job = Job {
                    chain: Chain::empty(),
                    work: message.id,
                    call: Call::Message(Box::new(message)),
                    kind,
                    name: Label::new(&name),
                    record: None,
                    reply: None,
                    caller: Label::new(caller.name),
                    cancel: CancellationToken::never(),
                };
                if let Err(e) = slot.submit(job) {
                    self.dead_message(caller, plugin, &e);
                    return Err(e);
                }
                Ok(Payload::empty())
            }
        }
    }
}
