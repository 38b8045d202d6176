//! Data types that cross the boundary besides payloads and errors.

use abi_stable::{
    std_types::{ROption, RResult, RString},
    StableAbi,
};

use crate::{error::PluginError, payload::Payload};

/// An event on the bus.
///
/// The host fills in every field except `data`: `source` is the emitter's plugin name (or
/// `host`), so a plugin cannot forge it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unique id of this event within the host process.
    pub id: u64,
    /// Id of the work (command, message, event) during which this event was emitted; 0 if none.
    pub parent: u64,
    /// The event type, for example `document:saved`.
    pub event_type: RString,
    /// Who emitted it: a plugin name, or `host`.
    pub source: RString,
    /// Milliseconds since the Unix epoch when the host accepted the event.
    pub timestamp_ms: u64,
    /// The event's data.
    pub data: Payload,
}

/// A direct message or RPC call addressed to one plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// Request id; replies are correlated by it.
    pub id: u64,
    /// Sender's plugin name, or `host`; stamped by the host.
    pub from: RString,
    /// RPC method name; empty for a plain message.
    pub method: RString,
    /// The message body (or RPC arguments).
    pub payload: Payload,
    /// Whether the sender waits for a reply.
    pub wants_reply: bool,
}

/// One subscriber's answer in [`emit_and_collect`](crate::Context::emit_and_collect).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct CollectedReply {
    /// The subscriber's plugin name.
    pub plugin: RString,
    /// What its handler returned (an empty payload when it returned nothing).
    pub result: RResult<Payload, PluginError>,
}

/// What a hook handler decides about the data it was given.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum HookOutcome {
    /// Pass this (possibly modified) data to the next handler.
    Continue(Payload),
    /// Stop the run: the data is refused, for this reason.
    Veto(RString),
}

/// A command on its way through the middleware chain.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandRequest {
    /// Unique id of this execution: pairs a middleware's `before_command` with its
    /// `after_command`.
    pub id: u64,
    /// Full command name, `<plugin>:<command>`.
    pub command: RString,
    /// Who called it: a plugin name, or `host`.
    pub caller: RString,
    /// The arguments.
    pub args: Payload,
}

/// What a middleware decides before the command runs.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MiddlewareAction {
    /// Go on with this (possibly changed) request.
    Continue(CommandRequest),
    /// Answer now without running the command or inner middleware.
    Respond(#[serde(with = "rresult_serde")] RResult<Payload, PluginError>),
}

/// Serde for abi_stable's `RResult`, which has none of its own: as a `Result`.
mod rresult_serde {
    use abi_stable::std_types::RResult;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, E: Serialize>(
        value: &RResult<T, E>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().into_result().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, E: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<RResult<T, E>, D::Error> {
        Result::<T, E>::deserialize(deserializer).map(RResult::from)
    }
}

/// Which keyspace a storage operation targets.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageScope {
    /// The calling plugin's own namespace; needs no capability.
    Plugin = 0,
    /// The namespace shared by all plugins; needs `storage:shared:read` / `storage:shared:write`.
    Shared = 1,
}

/// A key and its value, as returned by scans.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: RString,
    /// The stored value.
    pub value: Payload,
}

/// One operation of an atomic batch.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct BatchOp {
    /// The key written or deleted.
    pub key: RString,
    /// `RSome(value)` writes, `RNone` deletes.
    pub value: ROption<Payload>,
}
