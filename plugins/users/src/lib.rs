//! Example plugin: the `users` provider, over a fixed built-in table.
//!
//! | provider method / command | arguments | answer |
//! |---|---|---|
//! | `get` | `{"id": 1}` | `{"id": 1, "name": "Ada Lovelace"}` |
//! | `list` (also the command `users:list`) | none | `{"users": [{"id", "name"}, ...]}` |
//!
//! ```
//! assert_eq!(users::find(2).unwrap().name, "Grace Hopper");
//! assert_eq!(users::find(7).unwrap_err().message(), "no user with id 7");
//! ```
#![forbid(unsafe_code)]

use plugin_api::prelude::*;
use serde::{Deserialize, Serialize};

/// The built-in table: id and name.
const TABLE: [(u64, &str); 3] = [(1, "Ada Lovelace"), (2, "Grace Hopper"), (3, "Alan Turing")];

/// Arguments of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserId {
    /// The user's id.
    pub id: u64,
}

/// A user.
///
/// Rust plugins exchange bincode, which has no field names: callers decode it into a struct of
/// the same fields in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user's full name.
    pub name: String,
}

/// The answer of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Every user, by id.
    pub users: Vec<User>,
}

/// The user with `id`.
///
/// # Errors
/// [`ErrorKind::NotFound`] when there is none.
pub fn find(id: u64) -> PluginResult<User> {
    TABLE
        .iter()
        .find(|(user_id, _)| *user_id == id)
        .map(|&(id, name)| User {
            id,
            name: name.to_owned(),
        })
        .ok_or_else(|| PluginError::not_found(format!("no user with id {id}")))
}

/// Every user, by id.
pub fn all() -> UserList {
    UserList {
        users: TABLE
            .iter()
            .map(|&(id, name)| User {
                id,
                name: name.to_owned(),
            })
            .collect(),
    }
}

/// The users plugin; it keeps no state.
#[derive(Debug, Default)]
pub struct Users;

impl Users {
    fn get(&mut self, _: &Context, UserId { id }: UserId) -> PluginResult<User> {
        find(id)
    }

    fn list(&mut self, _: &Context, _: NoArgs) -> PluginResult<UserList> {
        Ok(all())
    }
}

impl Plugin for Users {
    fn manifest() -> Manifest {
        Manifest::new("users")
    }

    fn register(api: &mut Registrar<Self>) {
        api.command("list", "lists every user", Self::list);
        api.provider("users", 0)
            .method("get", r#"the user {"id": n}"#, Self::get)
            .method("list", "every user, by id", Self::list);
    }
}

export_plugin!(Users);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_known_users() -> PluginResult<()> {
        assert_eq!(find(1)?.name, "Ada Lovelace");
        assert_eq!(find(3)?.name, "Alan Turing");
        Ok(())
    }

    #[test]
    fn unknown_users_are_not_found() {
        let err = find(7).expect_err("no user 7");
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert_eq!(err.message(), "no user with id 7");
    }
}
