//! Capabilities as a type (added in 1.1). They cross the boundary, and sit in manifests and
//! host configs, in their wire form: the strings of the table in the crate docs.

use std::{fmt, str::FromStr};

/// What a plugin may do beyond its own namespace, as declared with [`Manifest::uses`]
/// (or implied by [`Manifest::emits`], [`Manifest::calls`] and the like).
///
/// The patterns take a trailing `*` (`data:*`, `greeter:*`, or `*` for everything of that
/// kind). [`Capability::Everything`] (`*` alone) grants every capability there is; a host may
/// refuse plugins that declare it (`allow_wildcard = false` in its config).
///
/// [`Manifest::uses`]: crate::Manifest::uses
/// [`Manifest::emits`]: crate::Manifest::emits
/// [`Manifest::calls`]: crate::Manifest::calls
///
/// ```
/// use plugin_api::Capability;
/// let c: Capability = "call:greeter:*".parse().unwrap();
/// assert_eq!(c, Capability::Call("greeter:*".into()));
/// assert_eq!(c.to_string(), "call:greeter:*");
/// assert!("fly:away".parse::<Capability>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `emit:<pattern>`: emitting matching event types.
    Emit(String),
    /// `subscribe:<pattern>`: subscribing to the pattern.
    Subscribe(String),
    /// `call:<pattern>`: executing matching commands (`<plugin>:<command>`).
    Call(String),
    /// `message:<plugin>`: direct messages, request-reply and RPC to that plugin.
    Message(String),
    /// `hook:run:<name>`: running a hook.
    RunHook(String),
    /// `provider:<name>`: calling a provider.
    Provider(String),
    /// `storage:shared:read`: reading the shared storage namespace.
    SharedRead,
    /// `storage:shared:write`: writing the shared storage namespace.
    SharedWrite,
    /// `database`: scans and atomic batches.
    Database,
    /// `middleware`: wrapping command execution.
    Middleware,
    /// `*`: everything above.
    Everything,
}

/// A capability string that is none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCapability(pub String);

impl fmt::Display for UnknownCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown capability {:?} (known: emit:<pattern>, subscribe:<pattern>, call:<pattern>, message:<plugin>, hook:run:<name>, provider:<name>, storage:shared:read, storage:shared:write, database, middleware, *)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCapability {}

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let with = |prefix: &str, make: fn(String) -> Capability| {
            s.strip_prefix(prefix)
                .filter(|rest| !rest.is_empty())
                .map(|rest| make(rest.to_owned()))
        };
        let fixed = match s {
            "storage:shared:read" => Some(Capability::SharedRead),
            "storage:shared:write" => Some(Capability::SharedWrite),
            "database" => Some(Capability::Database),
            "middleware" => Some(Capability::Middleware),
            "*" => Some(Capability::Everything),
            _ => None,
        };
        fixed
            .or_else(|| with("emit:", Capability::Emit))
            .or_else(|| with("subscribe:", Capability::Subscribe))
            .or_else(|| with("call:", Capability::Call))
            .or_else(|| with("message:", Capability::Message))
            .or_else(|| with("hook:run:", Capability::RunHook))
            .or_else(|| with("provider:", Capability::Provider))
            .ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Emit(p) => write!(f, "emit:{p}"),
            Capability::Subscribe(p) => write!(f, "subscribe:{p}"),
            Capability::Call(p) => write!(f, "call:{p}"),
            Capability::Message(p) => write!(f, "message:{p}"),
            Capability::RunHook(p) => write!(f, "hook:run:{p}"),
            Capability::Provider(p) => write!(f, "provider:{p}"),
            Capability::SharedRead => f.write_str("storage:shared:read"),
            Capability::SharedWrite => f.write_str("storage:shared:write"),
            Capability::Database => f.write_str("database"),
            Capability::Middleware => f.write_str("middleware"),
            Capability::Everything => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for wire in [
            "emit:data:*",
            "subscribe:*",
            "call:greeter:greet",
            "message:echo",
            "hook:run:before:save",
            "provider:users",
            "storage:shared:read",
            "storage:shared:write",
            "database",
            "middleware",
            "*",
        ] {
            let parsed: Capability = wire.parse().expect(wire);
            assert_eq!(parsed.to_string(), wire);
        }
    }

    #[test]
    fn unknown_and_empty_forms_are_named() {
        for bad in [
            "emit:",
            "storage:shared",
            "hook:before:save",
            "",
            "DATABASE",
        ] {
            let e = bad.parse::<Capability>().expect_err(bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
