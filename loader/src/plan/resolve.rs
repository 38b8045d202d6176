//! Dependency resolution: requirement checks, cycle detection and activation order.

use std::collections::{BTreeMap, HashMap};

use plugin_api::Dependency;

use crate::error::LoadError;

/// What the resolver needs to know about one plugin.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// Plugin name.
    pub name: &'a str,
    /// Plugin version.
    pub version: &'a semver::Version,
    /// Its declared dependencies.
    pub dependencies: &'a [Dependency],
}

/// The outcome of resolving a set of new plugins against the ones already running.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Indexes into the input, in an order where every plugin comes after its dependencies.
    pub order: Vec<usize>,
    /// Plugins that cannot be activated, by index, with the reason.
    pub failed: Vec<(usize, LoadError)>,
}

/// Checks every dependency of `nodes` against `nodes` themselves and the already `running`
/// plugins, detects cycles, and orders the rest for activation (ties broken by name).
pub fn resolve(nodes: &[Node<'_>], running: &HashMap<String, semver::Version>) -> Resolution {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    let mut failed: BTreeMap<usize, LoadError> = BTreeMap::new();

    // 1. Each requirement on its own.
    for (i, node) in nodes.iter().enumerate() {
        for dep in node.dependencies {
            let req = match semver::VersionReq::parse(&dep.requirement) {
                Ok(req) => req,
                Err(e) => {
                    failed.entry(i).or_insert(LoadError::BadRequirement {
                        plugin: node.name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement: dep.requirement.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let found = index
                .get(dep.name.as_str())
                .map(|&j| nodes[j].version)
                .or_else(|| running.get(&dep.name));
            match found {
                None => {
                    failed.entry(i).or_insert(LoadError::MissingDependency {
                        plugin: node.name.to_owned(),
                        dependency: dep.name.clone(),
                        requirement: dep.requirement.clone(),
                    });
                }
                Some(v) if !req.matches(v) => {
                    failed
                        .entry(i)
                        .or_insert(LoadError::IncompatibleDependency {
                            plugin: node.name.to_owned(),
                            dependency: dep.name.clone(),
                            requirement: dep.requirement.clone(),
                            found: v.to_string(),
                        });
                }
                Some(_) => {}
            }
        }
    }

    // 2. Cycles among the new plugins.
    for cycle in find_cycles(nodes, &index) {
        let text = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| nodes[i].name)
            .collect::<Vec<_>>()
            .join(" -> ");
        for &i in &cycle {
            failed.entry(i).or_insert(LoadError::Cycle {
                cycle: text.clone(),
            });
        }
    }

    // 3. Failure spreads to dependents.
    loop {
        let mut spread = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if failed.contains_key(&i) {
                continue;
            }
            if let Some(dep) = node.dependencies.iter().find(|d| {
                index
                    .get(d.name.as_str())
                    .is_some_and(|j| failed.contains_key(j))
            }) {
                spread.push((
                    i,
                    LoadError::DependencyFailed {
                        plugin: node.name.to_owned(),
                        dependency: dep.name.clone(),
                    },
                ));
            }
        }
        if spread.is_empty() {
            break;
        }
        failed.extend(spread);
    }

    // 4. Topological order of the rest (Kahn), smallest name first among ready plugins.
    let mut remaining: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !failed.contains_key(i))
        .map(|(i, n)| (n.name, i))
        .collect();
    let mut order = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let ready = remaining.iter().find_map(|(_, &i)| {
            nodes[i]
                .dependencies
                .iter()
                .all(|d| !remaining.contains_key(d.name.as_str()))
                .then_some(i)
        });
        match ready {
            Some(i) => {
                remaining.remove(nodes[i].name);
                order.push(i);
            }
            // Unreachable after cycle detection; kept total so a bug cannot loop forever.
            None => break,
        }
    }
    Resolution {
        order,
        failed: failed.into_iter().collect(),
    }
}

/// Strongly connected components with more than one node (or a self-loop), via Tarjan.
fn find_cycles(nodes: &[Node<'_>], index: &HashMap<&str, usize>) -> Vec<Vec<usize>> {
    struct State {
        next: usize,
        indices: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        cycles: Vec<Vec<usize>>,
    }
    fn edges<'n>(
        nodes: &'n [Node<'_>],
        index: &'n HashMap<&str, usize>,
        v: usize,
    ) -> impl Iterator<Item = usize> + 'n {
        nodes[v]
            .dependencies
            .iter()
            .filter_map(move |d| index.get(d.name.as_str()).copied())
    }
    fn visit(v: usize, nodes: &[Node<'_>], index: &HashMap<&str, usize>, s: &mut State) {
        s.indices[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for w in edges(nodes, index, v) {
            match s.indices[w] {
                None => {
                    visit(w, nodes, index, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(wi) if s.on_stack[w] => s.low[v] = s.low[v].min(wi),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.indices[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            let self_loop = edges(nodes, index, v).any(|w| w == v);
            if component.len() > 1 || self_loop {
                component.reverse();
                s.cycles.push(component);
            }
        }
    }
    let mut s = State {
        next: 0,
        indices: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        cycles: Vec::new(),
    };
    for v in 0..nodes.len() {
        if s.indices[v].is_none() {
            visit(v, nodes, index, &mut s);
        }
    }
    s.cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, req: &str) -> Dependency {
        Dependency {
            name: name.into(),
            requirement: req.into(),
        }
    }

    #[test]
    fn orders_dependencies_first_and_reports_problems() {
        let v1 = semver::Version::new(0, 1, 0);
        let v2 = semver::Version::new(2, 0, 0);
        let welcome_deps = [dep("greeter", "^0.1")];
        let bad_deps = [dep("greeter", "^1")];
        let missing_deps = [dep("nowhere", "*")];
        let a_deps = [dep("b", "*")];
        let b_deps = [dep("a", "*")];
        let after_bad = [dep("bad", "*")];
        let nodes = vec![
            Node {
                name: "welcome",
                version: &v1,
                dependencies: &welcome_deps,
            },
            Node {
                name: "greeter",
                version: &v1,
                dependencies: &[],
            },
            Node {
                name: "bad",
                version: &v2,
                dependencies: &bad_deps,
            },
            Node {
                name: "missing",
                version: &v1,
                dependencies: &missing_deps,
            },
            Node {
                name: "a",
                version: &v1,
                dependencies: &a_deps,
            },
            Node {
                name: "b",
                version: &v1,
                dependencies: &b_deps,
            },
            Node {
                name: "after-bad",
                version: &v1,
                dependencies: &after_bad,
            },
        ];
        let r = resolve(&nodes, &HashMap::new());
        assert_eq!(r.order, vec![1, 0]);
        let text: HashMap<usize, String> =
            r.failed.iter().map(|(i, e)| (*i, e.to_string())).collect();
        assert!(text[&2].contains("greeter is 0.1.0"), "{}", text[&2]);
        assert!(text[&3].contains("nowhere"), "{}", text[&3]);
        assert!(text[&4].contains("a -> b -> a"), "{}", text[&4]);
        assert!(text[&5].contains("cycle"), "{}", text[&5]);
        assert!(text[&6].contains("dependency bad failed"), "{}", text[&6]);
    }
}
