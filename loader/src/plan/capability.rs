//! Event-type and capability patterns: an exact name, a prefix ending in `*`, or `*` alone.

/// Whether `pattern` matches `name`: `*` matches everything, `data:*` matches every name that
/// starts with `data:`, anything else must be equal.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether the granted capabilities allow `wanted` (each grant may be a pattern).
pub fn allows(granted: &[String], wanted: &str) -> bool {
    granted.iter().any(|g| matches(g, wanted))
}

/// Whether a subscription `pattern` is covered by a granted `subscribe:` capability. A grant
/// `subscribe:data:*` covers subscribing to `data:*` and to `data:changed`.
pub fn allows_pattern(granted: &[String], kind: &str, pattern: &str) -> bool {
    granted.iter().any(|g| {
        g.strip_prefix(kind)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|grant| grant == pattern || matches(grant, pattern))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_star() {
        assert!(matches("data:changed", "data:changed"));
        assert!(!matches("data:changed", "data:changed2"));
        assert!(matches("data:*", "data:changed"));
        assert!(!matches("data:*", "user:loggedIn"));
        assert!(matches("*", "anything"));
    }

    #[test]
    fn capability_grants() {
        let granted = vec!["call:greeter:*".to_owned(), "subscribe:data:*".to_owned()];
        assert!(allows(&granted, "call:greeter:greet"));
        assert!(!allows(&granted, "call:echo:reverse"));
        assert!(allows_pattern(&granted, "subscribe", "data:*"));
        assert!(allows_pattern(&granted, "subscribe", "data:changed"));
        assert!(!allows_pattern(&granted, "subscribe", "*"));
    }
}
