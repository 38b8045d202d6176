//! Admission: the one decision of which proposed plugins may run, and why the others may not.
//!
//! [`admit`] is a pure function from "what is running" plus "what is proposed" to "what may
//! run, in which order, and why not". Loading a folder, reloading one plugin and `doctor`'s
//! "would it load" all ask it, so the three cannot disagree. It decides, for each proposal:
//! duplicates (among the proposals, and against running plugins), quarantine, the host config's
//! `enabled = false`, the host requirement, dependencies (missing, incompatible, cycles, and
//! failures that spread to dependents), a new version that would break a running dependent's
//! range (on reload), and provider conflicts at equal priority.

use plugin_api::Manifest;

use super::resolve::{self, Node};
use crate::{error::LoadError, source::PluginSource};

/// A plugin build proposed for activation.
#[derive(Clone, Copy)]
pub(crate) struct Proposal<'a> {
    /// The file (or compiled-in module) it comes from.
    pub source: &'a PluginSource,
    pub manifest: &'a Manifest,
    pub version: &'a semver::Version,
}

/// A plugin that is serving now.
#[derive(Clone, Copy)]
pub(crate) struct Running<'a> {
    /// The file (or compiled-in module) it came from.
    pub source: &'a PluginSource,
    pub manifest: &'a Manifest,
    pub version: &'a semver::Version,
}

/// Everything admission looks at besides the proposals.
pub(crate) struct World<'a> {
    pub host_version: &'a semver::Version,
    pub running: &'a [Running<'a>],
    /// Quarantined plugins and why.
    pub quarantined: &'a [(&'a str, &'a str)],
    /// Whether the host config disables a plugin.
    pub disabled: &'a dyn Fn(&str) -> bool,
    /// On reload: the running plugin that the (single) proposal replaces.
    pub replacing: Option<&'a str>,
    /// The host config's `allow_wildcard`: whether a plugin may declare capability `*`.
    pub allow_wildcard: bool,
    /// Providers running plugins registered at run time: (plugin, provider, priority). A
    /// proposal declaring one at the same priority clashes as with a declared one.
    pub registered_providers: &'a [(String, String, i32)],
}

/// What may run.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Indexes into the proposals, in activation order (dependencies first).
    pub order: Vec<usize>,
    /// Refused proposals, by index, with the reason.
    pub refused: Vec<(usize, LoadError)>,
}

impl Admission {
    /// The reason proposal `i` was refused, if it was.
    #[cfg(test)]
    fn refusal(&self, i: usize) -> Option<&LoadError> {
        self.refused.iter().find(|(j, _)| *j == i).map(|(_, e)| e)
    }
}

/// Decides which of `proposed` may run in `world`.
pub(crate) fn admit(world: &World<'_>, proposed: &[Proposal<'_>]) -> Admission {
    let running: Vec<&Running<'_>> = world
        .running
        .iter()
        .filter(|r| Some(r.manifest.name.as_str()) != world.replacing)
        .collect();
    let mut refused: Vec<(usize, LoadError)> = Vec::new();
    let mut accepted: Vec<usize> = Vec::new();
    for (i, p) in proposed.iter().enumerate() {
        match check_one(world, &running, proposed, &accepted, p) {
            Some(error) => refused.push((i, error)),
            None => accepted.push(i),
        }
    }
    let nodes: Vec<Node<'_>> = accepted
        .iter()
        .map(|&i| Node {
            name: &proposed[i].manifest.name,
            version: proposed[i].version,
            dependencies: &proposed[i].manifest.dependencies,
        })
        .collect();
    let versions = running
        .iter()
        .map(|r| (r.manifest.name.clone(), r.version.clone()))
        .collect();
    let resolution = resolve::resolve(&nodes, &versions);
    let mut failed: Vec<usize> = Vec::new();
    for (j, error) in resolution.failed {
        failed.push(accepted[j]);
        refused.push((accepted[j], error));
    }
    // A proposal that depends on a refused one (refused before resolution) fails with it.
    let mut order = Vec::new();
    for j in resolution.order {
        let i = accepted[j];
        let p = &proposed[i];
        let blocked = p.manifest.dependencies.iter().find(|d| {
            refused
                .iter()
                .any(|(k, _)| proposed[*k].manifest.name == d.name)
                && !running.iter().any(|r| r.manifest.name == d.name)
                && !order
                    .iter()
                    .any(|&k: &usize| proposed[k].manifest.name == d.name)
        });
        match blocked {
            Some(dep) => {
                failed.push(i);
                refused.push((
                    i,
                    LoadError::DependencyFailed {
                        plugin: p.manifest.name.clone(),
                        dependency: dep.name.clone(),
                    },
                ));
            }
            None => order.push(i),
        }
    }
    refused.sort_by_key(|(i, _)| *i);
    Admission { order, refused }
}

/// The checks of one proposal that need no dependency resolution.
fn check_one(
    world: &World<'_>,
    running: &[&Running<'_>],
    proposed: &[Proposal<'_>],
    accepted: &[usize],
    p: &Proposal<'_>,
) -> Option<LoadError> {
    let name = &p.manifest.name;
    let duplicate_of: Option<&PluginSource> = accepted
        .iter()
        .map(|&j| &proposed[j])
        .find(|q| &q.manifest.name == name)
        .map(|q| q.source)
        .or_else(|| {
            running
                .iter()
                .find(|r| &r.manifest.name == name)
                .map(|r| r.source)
        });
    if let Some(existing) = duplicate_of {
        return Some(LoadError::Duplicate {
            plugin: name.clone(),
            origin: p.source.clone(),
            existing: existing.clone(),
        });
    }
    if let Some((_, reason)) = world.quarantined.iter().find(|(q, _)| q == name) {
        return Some(LoadError::Quarantined {
            plugin: name.clone(),
            reason: (*reason).to_owned(),
        });
    }
    if (world.disabled)(name) {
        return Some(LoadError::Disabled {
            plugin: name.clone(),
        });
    }
    if !world.allow_wildcard && p.manifest.capabilities.iter().any(|c| c == "*") {
        return Some(LoadError::WildcardRefused {
            plugin: name.clone(),
        });
    }
    if let Err(e) = host_requirement(world.host_version, p) {
        return Some(e);
    }
    if let Some(replacing) = world.replacing {
        for r in running {
            for dep in r
                .manifest
                .dependencies
                .iter()
                .filter(|d| d.name == replacing)
            {
                let ok = semver::VersionReq::parse(&dep.requirement)
                    .is_ok_and(|req| req.matches(p.version));
                if !ok {
                    let old = world
                        .running
                        .iter()
                        .find(|o| o.manifest.name == replacing)
                        .map(|o| o.version.to_string())
                        .unwrap_or_default();
                    return Some(LoadError::BlockedByDependent {
                        plugin: name.clone(),
                        old,
                        new: p.version.to_string(),
                        dependent: r.manifest.name.clone(),
                        requirement: dep.requirement.clone(),
                    });
                }
            }
        }
    }
    for decl in &p.manifest.providers {
        let clash = running
            .iter()
            .filter(|r| &r.manifest.name != name)
            .map(|r| r.manifest)
            .chain(accepted.iter().map(|&j| proposed[j].manifest))
            .find(|m| {
                m.providers
                    .iter()
                    .any(|o| o.name == decl.name && o.priority == decl.priority)
            });
        if let Some(other) = clash {
            return Some(LoadError::ProviderConflict {
                plugin: name.clone(),
                provider: decl.name.clone(),
                priority: decl.priority,
                other: other.name.clone(),
            });
        }
        if let Some((other, _, _)) =
            world
                .registered_providers
                .iter()
                .find(|(p, provider, priority)| {
                    p != name && *provider == decl.name && *priority == decl.priority
                })
        {
            return Some(LoadError::ProviderConflict {
                plugin: name.clone(),
                provider: decl.name.clone(),
                priority: decl.priority,
                other: other.clone(),
            });
        }
    }
    None
}

fn host_requirement(host: &semver::Version, p: &Proposal<'_>) -> Result<(), LoadError> {
    let text = if p.manifest.host_requirement.is_empty() {
        "*"
    } else {
        &p.manifest.host_requirement
    };
    let req = semver::VersionReq::parse(text).map_err(|e| LoadError::Manifest {
        origin: p.source.clone(),
        message: format!("host requirement {text:?} is not a semver range: {e}"),
    })?;
    if !req.matches(host) {
        return Err(LoadError::HostRequirement {
            plugin: p.manifest.name.clone(),
            requirement: text.to_owned(),
            host: host.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use plugin_api::{Dependency, ProviderDecl};

    use super::*;

    struct Build {
        path: PluginSource,
        manifest: Manifest,
        version: semver::Version,
    }

    fn build(name: &str, version: &str) -> Build {
        let mut manifest = Manifest::new(name);
        manifest.version = version.to_owned();
        Build {
            path: PathBuf::from(format!("/plugins/{name}-{version}.so")).into(),
            manifest,
            version: semver::Version::parse(version).expect("semver"),
        }
    }

    fn needs(mut b: Build, dep: &str, req: &str) -> Build {
        b.manifest.dependencies.push(Dependency {
            name: dep.to_owned(),
            requirement: req.to_owned(),
        });
        b
    }

    fn provides(mut b: Build, provider: &str, priority: i32) -> Build {
        b.manifest.providers.push(ProviderDecl {
            name: provider.to_owned(),
            priority,
            ..ProviderDecl::default()
        });
        b
    }

    fn proposal(b: &Build) -> Proposal<'_> {
        Proposal {
            source: &b.path,
            manifest: &b.manifest,
            version: &b.version,
        }
    }

    fn running(b: &Build) -> Running<'_> {
        Running {
            source: &b.path,
            manifest: &b.manifest,
            version: &b.version,
        }
    }

    fn decide(running: &[Running<'_>], replacing: Option<&str>, proposed: &[&Build]) -> Admission {
        let host = semver::Version::new(0, 1, 0);
        let no = |_: &str| false;
        let world = World {
            host_version: &host,
            running,
            quarantined: &[("sick", "3 restarts in 300 s")],
            disabled: &|name: &str| name == "off" || no(name),
            allow_wildcard: false,
            replacing,
            registered_providers: &[],
        };
        let proposals: Vec<Proposal<'_>> = proposed.iter().map(|b| proposal(b)).collect();
        admit(&world, &proposals)
    }

    #[test]
    fn a_duplicate_of_a_compiled_in_plugin_names_it_as_such() {
        let mut builtin = build("echo", "1.0.0");
        builtin.path = PluginSource::CompiledIn;
        let file = build("echo", "1.1.0");
        let admission = decide(&[running(&builtin)], None, &[&file]);
        assert!(admission.order.is_empty());
        assert!(matches!(
            admission.refusal(0),
            Some(LoadError::Duplicate { origin, existing: PluginSource::CompiledIn, .. })
                if *origin == PathBuf::from("/plugins/echo-1.1.0.so")
        ));
        // And the other way round: a compiled-in module proposed beside a running file.
        let admission = decide(&[running(&file)], None, &[&builtin]);
        assert!(matches!(
            admission.refusal(0),
            Some(LoadError::Duplicate { origin: PluginSource::CompiledIn, existing, .. })
                if *existing == PathBuf::from("/plugins/echo-1.1.0.so")
        ));
    }

    #[test]
    fn dependencies_come_first_and_failures_spread() {
        let (a, b, c) = (
            build("a", "1.0.0"),
            needs(build("b", "1.0.0"), "a", "^1"),
            needs(build("c", "1.0.0"), "missing", "^1"),
        );
        let d = needs(build("d", "1.0.0"), "c", "^1");
        let admission = decide(&[], None, &[&b, &a, &c, &d]);
        assert_eq!(admission.order, [1, 0]);
        assert!(matches!(
            admission.refusal(2),
            Some(LoadError::MissingDependency { dependency, .. }) if dependency == "missing"
        ));
        assert!(matches!(
            admission.refusal(3),
            Some(LoadError::DependencyFailed { dependency, .. }) if dependency == "c"
        ));
    }

    #[test]
    fn duplicates_quarantine_disabled_and_host_requirement_are_refused() {
        let first = build("twin", "1.0.0");
        let mut second = build("twin", "1.1.0");
        second.path = PathBuf::from("/plugins/other.so").into();
        let sick = build("sick", "1.0.0");
        let off = build("off", "1.0.0");
        let mut picky = build("picky", "1.0.0");
        picky.manifest.host_requirement = ">=2".to_owned();
        let admission = decide(&[], None, &[&first, &second, &sick, &off, &picky]);
        assert_eq!(admission.order, [0]);
        assert!(matches!(
            admission.refusal(1),
            Some(LoadError::Duplicate { origin, existing, .. })
                if *origin == PathBuf::from("/plugins/other.so")
                    && *existing == PathBuf::from("/plugins/twin-1.0.0.so")
        ));
        assert!(
            matches!(admission.refusal(2), Some(LoadError::Quarantined { reason, .. }) if reason.contains("3 restarts"))
        );
        assert!(matches!(
            admission.refusal(3),
            Some(LoadError::Disabled { .. })
        ));
        assert!(matches!(
            admission.refusal(4),
            Some(LoadError::HostRequirement { .. })
        ));
    }

    #[test]
    fn a_wildcard_capability_is_refused_when_the_host_says_so() {
        let mut greedy = build("greedy", "1.0.0");
        greedy.manifest.capabilities.push("*".to_owned());
        let plain = build("plain", "1.0.0");
        let a = decide(&[], None, &[&greedy, &plain]);
        assert!(matches!(
            a.refusal(0),
            Some(LoadError::WildcardRefused { plugin }) if plugin == "greedy"
        ));
        assert_eq!(a.order, [1]);
    }

    #[test]
    fn a_running_plugin_wins_over_a_new_file_of_the_same_name() {
        let old = build("greeter", "0.1.0");
        let new = build("greeter", "0.2.0");
        let admission = decide(&[running(&old)], None, &[&new]);
        assert!(admission.order.is_empty());
        assert!(matches!(
            admission.refusal(0),
            Some(LoadError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_reload_may_not_break_a_running_dependent() {
        let old = build("greeter", "0.1.0");
        let welcome = needs(build("welcome", "0.1.0"), "greeter", "^0.1");
        let compatible = build("greeter", "0.1.5");
        let breaking = build("greeter", "0.2.0");
        let world = [running(&old), running(&welcome)];
        assert_eq!(decide(&world, Some("greeter"), &[&compatible]).order, [0]);
        let admission = decide(&world, Some("greeter"), &[&breaking]);
        assert!(matches!(
            admission.refusal(0),
            Some(LoadError::BlockedByDependent { dependent, old, .. }) if dependent == "welcome" && old == "0.1.0"
        ));
    }

    #[test]
    fn providers_at_equal_priority_conflict_with_running_and_proposed_plugins() {
        let users = provides(build("users", "1.0.0"), "users", 0);
        let twin = provides(build("users-twin", "1.0.0"), "users", 0);
        let high = provides(build("users-high", "1.0.0"), "users", 10);
        let admission = decide(&[running(&users)], None, &[&twin, &high]);
        assert_eq!(admission.order, [1]);
        assert!(matches!(
            admission.refusal(0),
            Some(LoadError::ProviderConflict { other, .. }) if other == "users"
        ));
        // Reloading the provider itself is no conflict.
        let users_next = provides(build("users", "1.0.1"), "users", 0);
        assert_eq!(
            decide(&[running(&users)], Some("users"), &[&users_next]).order,
            [0]
        );
    }

    #[test]
    fn dependency_cycles_are_refused_with_the_cycle() {
        let a = needs(build("a", "1.0.0"), "b", "*");
        let b = needs(build("b", "1.0.0"), "a", "*");
        let admission = decide(&[], None, &[&a, &b]);
        assert!(admission.order.is_empty());
        assert!(
            matches!(admission.refusal(0), Some(LoadError::Cycle { cycle }) if cycle.contains("a -> b"))
        );
    }
}
