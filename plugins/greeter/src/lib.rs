//! Example plugin: greets people, announces each greeting, and greets users by id through the
//! `users` provider.
//!
//! | command | arguments | answer |
//! |---|---|---|
//! | `greeter:greet` | `{"name": "Ada"}` | `{"message": "Hello, Ada!"}` |
//! | `greeter:greet-user` | `{"id": 1}` | `{"message": "Hello, Ada Lovelace!"}` |
//!
//! `greet` emits `greeter:greeted` with `{"name": ...}`; `greet-user` calls method `get` of
//! provider `users` (served by the `users` plugin).
//!
//! ```
//! use greeter::greeting;
//! assert_eq!(greeting(" Ada ").unwrap(), "Hello, Ada!");
//! assert!(greeting("  ").is_err());
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// Arguments of `greeter:greet`; also what a caller encodes to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greet {
    /// Who to greet; must not be blank.
    pub name: String,
}

/// The answer of `greeter:greet` and `greeter:greet-user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    /// The greeting, for example `Hello, Ada!`.
    pub message: String,
}

/// Data of the `greeter:greeted` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeted {
    /// The name that was greeted, trimmed.
    pub name: String,
}

/// Arguments of `greeter:greet-user`, and of the `users` provider's `get` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserId {
    /// The user's id.
    pub id: u64,
}

/// A user as the `users` provider returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user's full name.
    pub name: String,
}

/// What the host config may set under `[plugins.greeter.config]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GreeterConfig {
    /// The word before the name: `salutation = "Hi"` greets `Hi, Ada!`.
    pub salutation: String,
}

impl Default for GreeterConfig {
    fn default() -> Self {
        GreeterConfig {
            salutation: "Hello".to_owned(),
        }
    }
}

/// The greeting for `name`, which is trimmed first.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `name` is empty or only whitespace.
pub fn greeting(name: &str) -> PluginResult<String> {
    greeting_with(&GreeterConfig::default().salutation, name)
}

/// [`greeting`] with another salutation.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `name` is empty or only whitespace.
pub fn greeting_with(salutation: &str, name: &str) -> PluginResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(PluginError::invalid("name must be a non-empty string"));
    }
    Ok(format!("{salutation}, {name}!"))
}

/// The greeter plugin; it keeps only its config.
#[derive(Debug, Default)]
pub struct Greeter {
    config: GreeterConfig,
}

impl Greeter {
    fn greet(&mut self, ctx: &Context, Greet { name }: Greet) -> PluginResult<Greeting> {
        let message = greeting_with(&self.config.salutation, &name)?;
        let name = name.trim().to_owned();
        log::info!("greeting {name}");
        ctx.emit("greeter:greeted", &Greeted { name })?;
        Ok(Greeting { message })
    }

    fn greet_user(&mut self, ctx: &Context, id: UserId) -> PluginResult<Greeting> {
        let user: User = ctx.provider_call("users", "get", &id)?;
        let message = greeting_with(&self.config.salutation, &user.name)?;
        log::info!("greeting user {} ({})", user.id, user.name);
        Ok(Greeting { message })
    }
}

impl Plugin for Greeter {
    fn manifest() -> Manifest {
        Manifest::new("greeter")
            .emits("greeter:greeted")
            .uses_provider("users")
    }

    /// Reads `[plugins.greeter.config]`; a config it does not understand fails the activation
    /// with serde's message rather than being ignored.
    fn activate(&mut self, ctx: &Context) -> PluginResult<()> {
        self.config = ctx.config::<GreeterConfig>()?;
        Ok(())
    }

    fn register(api: &mut Registrar<Self>) {
        api.command(
            "greet",
            r#"greets {"name": ...} and emits greeter:greeted"#,
            Self::greet,
        )
        .command(
            "greet-user",
            r#"greets user {"id": n} from the users provider"#,
            Self::greet_user,
        );
    }
}

export_plugin!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_trimmed_names() -> PluginResult<()> {
        assert_eq!(greeting("Ada")?, "Hello, Ada!");
        assert_eq!(greeting("  Grace ")?, "Hello, Grace!");
        Ok(())
    }

    #[test]
    fn refuses_blank_names() {
        for blank in ["", "   ", "\t\n"] {
            let err = greeting(blank).expect_err("a blank name is refused");
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert_eq!(err.message(), "name must be a non-empty string");
        }
    }

    #[test]
    fn json_callers_get_json_back() -> PluginResult<()> {
        let args = Payload::from_json_str(r#"{"name":"Ada"}"#)?;
        assert_eq!(args.decode::<Greet>()?.name, "Ada");
        let reply = args.reply_with(&Greeting {
            message: "Hello, Ada!".into(),
        })?;
        assert_eq!(reply.to_json_string()?, r#"{"message":"Hello, Ada!"}"#);
        Ok(())
    }

    #[test]
    fn manifest_declares_what_the_plugin_uses() {
        let m = plugin_api::manifest_of::<Greeter>();
        assert_eq!(m.name, "greeter");
        let commands: Vec<_> = m.commands.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(commands, ["greet", "greet-user"]);
        let caps = m.declared_capabilities();
        assert!(caps.contains(&"emit:greeter:greeted".to_owned()));
        assert!(caps.contains(&"provider:users".to_owned()));
    }
}
