//! Who is asking: a plugin (with its granted capabilities and the wait chain it calls from) or
//! the host application.

use plugin_api::{ErrorKind, PluginError};

use crate::{plan::capability, runtime::chain::Chain};

/// The caller of a dispatcher operation.
pub(crate) struct Caller<'a> {
    /// Plugin name, or `host`.
    pub name: &'a str,
    /// `None` for the host application, which may do anything.
    pub granted: Option<&'a [String]>,
    /// Plugins blocked on this call, including the caller if it is on its own thread.
    pub chain: Chain,
    /// The work during which the call is made (0: none).
    pub work: u64,
}

impl Caller<'_> {
    /// The host application.
    pub fn host() -> Caller<'static> {
        Caller {
            name: "host",
            granted: None,
            chain: Chain::empty(),
            work: 0,
        }
    }

    /// Refuses the operation unless `capability` is granted.
    pub fn require(&self, capability: &str) -> Result<(), PluginError> {
        match self.granted {
            None => Ok(()),
            Some(granted) if capability::allows(granted, capability) => Ok(()),
            Some(_) => {
                log::debug!(
                    "permission denied: plugin {} lacks capability {capability}",
                    self.name
                );
                Err(PluginError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: plugin {} lacks capability {capability} (declare it in the manifest; the host config may also revoke it)",
                        self.name
                    ),
                ))
            }
        }
    }

    /// Refuses a call to `target` that would wait on a thread already waiting on this call.
    pub fn cycle_to(&self, target: &str) -> Result<(), PluginError> {
        if self.chain.contains(target) {
            let path: Vec<&str> = self
                .chain
                .iter()
                .map(|p| &**p)
                .chain(std::iter::once(target))
                .collect();
            return Err(PluginError::new(
                ErrorKind::Cycle,
                format!(
                    "call cycle: {} (a plugin cannot wait on a call that needs its own dispatcher thread)",
                    path.join(" -> ")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_call_back_into_a_waiting_plugin_is_a_cycle() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let caller = Caller {
            name: "b",
            granted: Some(&[]),
            chain: Chain::empty().with(&a).with(&b),
            work: 1,
        };
        let e = caller.cycle_to("a").expect_err("a waits on this call");
        assert_eq!(e.kind, ErrorKind::Cycle);
        assert!(e.message().contains("a -> b -> a"));
        assert!(caller.cycle_to("c").is_ok());
    }

    #[test]
    fn the_host_may_do_anything_and_plugins_what_they_were_granted() {
        assert!(Caller::host().require("emit:x").is_ok());
        let granted = ["emit:user:*".to_owned()];
        let plugin = Caller {
            name: "p",
            granted: Some(&granted),
            chain: Chain::empty(),
            work: 0,
        };
        assert!(plugin.require("emit:user:created").is_ok());
        let e = plugin.require("emit:order:paid").expect_err("not granted");
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e
            .message()
            .contains("plugin p lacks capability emit:order:paid"));
    }
}
