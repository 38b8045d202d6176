//! Example plugin: direct messages and RPC.
//!
//! A direct message comes back as it was sent. RPC methods:
//!
//! | method | arguments | answer |
//! |---|---|---|
//! | `reverse` | a string | the string reversed (by `char`) |
//! | `upper` | a string | the string in upper case |
//! | `ping` | anything | `"pong"` |
//!
//! The command `echo:reverse` does what the `reverse` method does, for the command line.
//!
//! ```
//! assert_eq!(echo::reverse("abc"), "cba");
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;

/// `text` with its characters in reverse order.
pub fn reverse(text: &str) -> String {
    text.chars().rev().collect()
}

/// The echo plugin; it keeps no state.
#[derive(Debug, Default)]
pub struct Echo;

impl Echo {
    fn reverse(&mut self, _: &Context, text: String) -> PluginResult<String> {
        Ok(reverse(&text))
    }

    fn upper(&mut self, _: &Context, text: String) -> PluginResult<String> {
        Ok(text.to_uppercase())
    }

    fn ping(&mut self, _: &Context, args: &Payload) -> PluginResult<Payload> {
        args.reply_with("pong")
    }

    fn echo(&mut self, _: &Context, message: &Message) -> PluginResult<Option<Payload>> {
        Ok(Some(message.payload.clone()))
    }
}

impl Plugin for Echo {
    fn manifest() -> Manifest {
        Manifest::new("echo")
    }

    fn register(api: &mut Registrar<Self>) {
        api.command(
            "reverse",
            "reverses a string, like the reverse RPC method",
            Self::reverse,
        )
        .rpc("reverse", "the string reversed (by char)", Self::reverse)
        .rpc("upper", "the string in upper case", Self::upper)
        .rpc_raw("ping", "answers \"pong\" to anything", Self::ping)
        .on_message(Self::echo);
    }
}

export_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverses_by_char() {
        assert_eq!(reverse(""), "");
        assert_eq!(reverse("héllo"), "olléh");
    }
}
