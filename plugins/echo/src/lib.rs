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

/// Serves RPC method `method` with `args`, answering in the caller's codec.
///
/// # Errors
/// [`ErrorKind::NotFound`] for an unknown method; a codec error when a string was expected and
/// `args` is not one.
pub fn dispatch(method: &str, args: &Payload) -> PluginResult<Payload> {
    match method {
        "reverse" => args.reply_with(&reverse(&args.decode::<String>()?)),
        "upper" => args.reply_with(&args.decode::<String>()?.to_uppercase()),
        "ping" => args.reply_with("pong"),
        other => Err(PluginError::not_found(format!(
            "echo has no method {other}"
        ))),
    }
}

/// The echo plugin; it keeps no state.
#[derive(Debug, Default)]
pub struct Echo;

impl Plugin for Echo {
    fn manifest() -> Manifest {
        Manifest::new("echo")
            .accepts_messages()
            .command_with_help("reverse", "reverses a string, like the reverse RPC method")
    }

    fn handle_command(
        &mut self,
        _ctx: &Context,
        command: &str,
        args: &Payload,
    ) -> PluginResult<Payload> {
        match command {
            "reverse" => dispatch("reverse", args),
            other => Err(PluginError::not_found(format!(
                "command not found: echo:{other}"
            ))),
        }
    }

    fn on_message(&mut self, _ctx: &Context, message: &Message) -> PluginResult<Option<Payload>> {
        Ok(Some(message.payload.clone()))
    }

    fn on_call(&mut self, _ctx: &Context, method: &str, args: &Payload) -> PluginResult<Payload> {
        dispatch(method, args)
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

    #[test]
    fn methods_answer_in_the_callers_codec() -> PluginResult<()> {
        let json = Payload::from_json_str(r#""abc""#)?;
        assert_eq!(dispatch("reverse", &json)?.to_json_string()?, r#""cba""#);
        assert_eq!(dispatch("upper", &json)?.to_json_string()?, r#""ABC""#);
        assert_eq!(dispatch("ping", &json)?.to_json_string()?, r#""pong""#);

        let bincode = Payload::encode("abc")?;
        assert_eq!(dispatch("upper", &bincode)?.decode::<String>()?, "ABC");
        assert_eq!(
            dispatch("ping", &Payload::empty())?.decode::<String>()?,
            "pong"
        );
        Ok(())
    }

    #[test]
    fn unknown_methods_and_bad_arguments_fail() -> PluginResult<()> {
        let err = dispatch("shout", &Payload::empty()).expect_err("no such method");
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(err.message(), "echo has no method shout");
        let not_a_string = Payload::from_json_str("42")?;
        let err = dispatch("reverse", &not_a_string).expect_err("not a string");
        assert_eq!(err.kind, ErrorKind::Codec);
        Ok(())
    }
}
