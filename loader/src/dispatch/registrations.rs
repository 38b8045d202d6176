//! Registration at run time: commands, hooks and providers a plugin adds while it runs, within
//! the name patterns its manifest declares (plugin-api 1.1).
//!
//! Each registration lives in the same tables as what manifests declare, so calls find it the
//! same way, and it is held under the instance that made it (its seal id): the end of that
//! instance removes it (deactivation removes everything of the plugin; a reload or a restart
//! removes the previous instance's and keeps the new one's, which it made while activating).
//! The same collision rules as for declared names apply.

use std::sync::Arc;

use plugin_api::{ErrorKind, Manifest, PluginError, RegistrationDecl, RegistrationKind};

use super::{
    routes::{Route, Routes},
    Dispatcher,
};
use crate::runtime::slot::Slot;

/// A run-time registration in force, as [`Host::registrations`](crate::Host::registrations)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationInfo {
    /// The host's id of the registration.
    pub id: u64,
    /// The plugin that made it.
    pub plugin: String,
    /// What was registered, with its help, priority or methods.
    #[serde(flatten)]
    pub decl: RegistrationDecl,
    /// The manifest pattern that allows it.
    pub pattern: String,
}

/// One registration in the tables.
#[derive(Clone)]
pub(crate) struct Registered {
    info: RegistrationInfo,
    /// The seal id of the instance that made it.
    instance: u64,
    /// For a hook or provider: the sequence number of its ranked entry.
    seq: u64,
}

/// Who is registering: the plugin's slot, its manifest, and the instance.
pub(crate) struct Registrant<'a> {
    pub slot: &'a Arc<Slot>,
    pub manifest: &'a Manifest,
    pub instance: u64,
}

fn refused(kind: ErrorKind, message: String) -> PluginError {
    PluginError::new(kind, message)
}

/// Why `manifest` does not let its plugin register `decl`, if it does not: outside the
/// declared patterns, or a name the manifest declares itself. Otherwise the allowing pattern.
fn allowed(manifest: &Manifest, decl: &RegistrationDecl) -> Result<String, PluginError> {
    let (plugin, kind, name) = (&manifest.name, decl.kind(), decl.name());
    let Some(pattern) = manifest.patterns.allowing(kind, name) else {
        let patterns = manifest.patterns.of(kind);
        let declared = if patterns.is_empty() {
            format!("its manifest declares no {kind} patterns ({kind}s_matching)")
        } else {
            format!(
                "its manifest allows {kind}s matching {}",
                patterns.join(", ")
            )
        };
        return Err(refused(
            ErrorKind::PermissionDenied,
            format!("plugin {plugin} may not register {kind} {name}: {declared}"),
        ));
    };
    let declared = match kind {
        RegistrationKind::Command => manifest.commands.iter().any(|c| c.name == name),
        RegistrationKind::Hook => manifest.hooks.iter().any(|h| h.name == name),
        RegistrationKind::Provider => manifest.providers.iter().any(|p| p.name == name),
    };
    if declared {
        return Err(refused(
            ErrorKind::InvalidInput,
            format!("plugin {plugin} cannot register {kind} {name}: its manifest declares it"),
        ));
    }
    Ok(pattern.to_owned())
}

impl Routes {
    /// Adds registration `id` of `who`, allowed by `pattern`, refusing collisions.
    fn register(
        &mut self,
        who: &Registrant<'_>,
        id: u64,
        decl: RegistrationDecl,
        pattern: String,
    ) -> Result<(), PluginError> {
        let plugin: &str = &who.slot.name;
        let (kind, name) = (decl.kind(), decl.name().to_owned());
        let earlier = self
            .registrations
            .iter()
            .find(|r| {
                r.info.plugin == plugin && r.info.decl.kind() == kind && r.info.decl.name() == name
            })
            .map(|r| (r.info.id, r.instance));
        match earlier {
            // A new instance's registration replaces the one its predecessor left.
            Some((old, instance)) if instance < who.instance => {
                self.unregister(plugin, old);
            }
            Some((old, _)) => {
                return Err(refused(
                    ErrorKind::InvalidInput,
                    format!(
                        "plugin {plugin} already registered {kind} {name} (registration {old})"
                    ),
                ))
            }
            None => {}
        }
        let seq = match &decl {
            RegistrationDecl::Command(c) => {
                let full = format!("{plugin}:{}", c.name);
                if self.commands.contains_key(&full) {
                    return Err(refused(
                        ErrorKind::InvalidInput,
                        format!("plugin {plugin} cannot register command {name}: {full} exists"),
                    ));
                }
                self.commands.insert(
                    full.clone(),
                    Route::Plugin {
                        slot: who.slot.clone(),
                        short: Arc::from(c.name.as_str()),
                        full: Arc::from(full),
                    },
                );
                0
            }
            RegistrationDecl::Hook(h) => self.add_hook(&h.name, h.priority, who.slot.clone()),
            RegistrationDecl::Provider(p) => {
                if let Some(other) = self.providers.get(&p.name).and_then(|list| {
                    list.iter()
                        .find(|r| &*r.slot.name != plugin && r.priority == p.priority)
                }) {
                    return Err(refused(
                        ErrorKind::InvalidInput,
                        format!(
                            "plugin {plugin} cannot register provider {name} at priority {}: plugin {} provides it at the same priority",
                            p.priority, other.slot.name
                        ),
                    ));
                }
                self.add_provider(&p.name, p.priority, who.slot.clone())
            }
        };
        self.registrations.push(Registered {
            info: RegistrationInfo {
                id,
                plugin: plugin.to_owned(),
                decl,
                pattern,
            },
            instance: who.instance,
            seq,
        });
        Ok(())
    }

    /// Removes registration `id` of `plugin`; returns whether it was in force.
    fn unregister(&mut self, plugin: &str, id: u64) -> bool {
        let Some(at) = self
            .registrations
            .iter()
            .position(|r| r.info.id == id && r.info.plugin == plugin)
        else {
            return false;
        };
        let gone = self.registrations.remove(at);
        self.drop_route(&gone);
        true
    }

    fn drop_route(&mut self, gone: &Registered) {
        match &gone.info.decl {
            RegistrationDecl::Command(c) => {
                self.commands
                    .remove(&format!("{}:{}", gone.info.plugin, c.name));
            }
            RegistrationDecl::Hook(h) => {
                if let Some(list) = self.hooks.get_mut(&h.name) {
                    list.retain(|r| r.seq != gone.seq);
                    if list.is_empty() {
                        self.hooks.remove(&h.name);
                    }
                }
            }
            RegistrationDecl::Provider(p) => {
                if let Some(list) = self.providers.get_mut(&p.name) {
                    list.retain(|r| r.seq != gone.seq);
                    if list.is_empty() {
                        self.providers.remove(&p.name);
                    }
                }
            }
        }
    }

    /// Removes `plugin`'s registrations, except those of instance `keep`, and their routes.
    pub(super) fn drop_registrations(&mut self, plugin: &str, keep: Option<u64>) {
        let (gone, kept): (Vec<Registered>, Vec<Registered>) =
            std::mem::take(&mut self.registrations)
                .into_iter()
                .partition(|r| r.info.plugin == plugin && Some(r.instance) != keep);
        self.registrations = kept;
        for r in &gone {
            self.drop_route(r);
        }
    }

    /// The registrations of `plugin` that a reload's reinstall keeps: the command names and
    /// the ranked entries' sequence numbers of instance `keep`.
    pub(super) fn kept_by(&self, plugin: &str, keep: u64) -> (Vec<String>, Vec<u64>) {
        let mine = self
            .registrations
            .iter()
            .filter(|r| r.info.plugin == plugin && r.instance == keep);
        let mut commands = Vec::new();
        let mut seqs = Vec::new();
        for r in mine {
            match &r.info.decl {
                RegistrationDecl::Command(c) => commands.push(format!("{plugin}:{}", c.name)),
                _ => seqs.push(r.seq),
            }
        }
        (commands, seqs)
    }

    /// Removes the registrations of `plugin`'s instance `instance`, and their routes.
    pub(super) fn drop_instance(&mut self, plugin: &str, instance: u64) {
        let (gone, kept): (Vec<Registered>, Vec<Registered>) =
            std::mem::take(&mut self.registrations)
                .into_iter()
                .partition(|r| r.info.plugin == plugin && r.instance == instance);
        self.registrations = kept;
        for r in &gone {
            self.drop_route(r);
        }
    }

    /// The registrations in force, of one plugin or of all, by id.
    pub(super) fn registration_infos(&self, plugin: Option<&str>) -> Vec<RegistrationInfo> {
        self.registrations
            .iter()
            .filter(|r| plugin.is_none_or(|p| r.info.plugin == p))
            .map(|r| r.info.clone())
            .collect()
    }
}

impl Dispatcher {
    /// Registers `decl` for `who` (its context asked): checks the manifest's patterns and
    /// declarations, then the tables' collisions. Returns the registration's id.
    pub(crate) fn register(
        &self,
        who: &Registrant<'_>,
        decl: RegistrationDecl,
    ) -> Result<u64, PluginError> {
        let pattern = allowed(who.manifest, &decl)?;
        if let RegistrationDecl::Command(c) = &decl {
            if c.name.is_empty() || c.name.contains(char::is_whitespace) {
                return Err(PluginError::invalid(format!(
                    "plugin {} cannot register command {:?}: a command name is not empty and has no spaces",
                    who.manifest.name, c.name
                )));
            }
        }
        let id = self.next_id();
        self.routes.write().register(who, id, decl, pattern)?;
        log::debug!("plugin {} registered {id}", who.manifest.name);
        Ok(id)
    }

    /// Removes registration `id` of `plugin`.
    pub(crate) fn unregister(&self, plugin: &str, id: u64) -> Result<(), PluginError> {
        if self.routes.write().unregister(plugin, id) {
            Ok(())
        } else {
            Err(PluginError::not_found(format!(
                "plugin {plugin} has no registration {id} in force"
            )))
        }
    }

    /// Removes `plugin`'s run-time registrations except those of instance `keep` (all when
    /// `None`): after a restart (keep the new instance's) or a failed activation (all).
    pub(crate) fn drop_registrations(&self, plugin: &str, keep: Option<u64>) {
        self.routes.write().drop_registrations(plugin, keep);
    }

    /// Removes what instance `instance` of `plugin` registered (its activation failed).
    pub(crate) fn drop_instance_registrations(&self, plugin: &str, instance: u64) {
        self.routes.write().drop_instance(plugin, instance);
    }

    /// The providers registered at run time: (plugin, provider, priority), for admission.
    pub(crate) fn registered_providers(&self) -> Vec<(String, String, i32)> {
        self.registrations(None)
            .into_iter()
            .filter_map(|r| match r.decl {
                RegistrationDecl::Provider(p) => Some((r.plugin, p.name, p.priority)),
                _ => None,
            })
            .collect()
    }

    /// The run-time registrations in force, of `plugin` or of every plugin, by id.
    pub(crate) fn registrations(&self, plugin: Option<&str>) -> Vec<RegistrationInfo> {
        self.routes.read().registration_infos(plugin)
    }
}

#[cfg(test)]
mod tests {
    use plugin_api::{CommandDecl, HookDecl};

    use super::*;

    fn command(name: &str) -> RegistrationDecl {
        RegistrationDecl::Command(CommandDecl {
            name: name.to_owned(),
            description: String::new(),
        })
    }

    #[test]
    fn the_manifest_decides_which_names_may_be_registered() {
        let manifest = Manifest::new("scripts")
            .command("list")
            .commands_matching("script-*")
            .commands_matching("list");
        assert_eq!(
            allowed(&manifest, &command("script-a")).expect("allowed"),
            "script-*"
        );
        let e = allowed(&manifest, &command("deploy")).expect_err("outside");
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert_eq!(
            e.message(),
            "plugin scripts may not register command deploy: its manifest allows commands matching script-*, list"
        );
        let e = allowed(&manifest, &command("list")).expect_err("declared");
        assert!(e.message().contains("its manifest declares it"), "{e}");
        let hook = RegistrationDecl::Hook(HookDecl {
            name: "before:save".to_owned(),
            priority: 0,
        });
        let e = allowed(&manifest, &hook).expect_err("no hook patterns");
        assert!(
            e.message()
                .ends_with("its manifest declares no hook patterns (hooks_matching)"),
            "{e}"
        );
    }
}
