//! "Did you mean …?": the known word closest to a mistyped one (`strsim`'s Jaro-Winkler).

/// How similar two words must be (0 to 1) for one to be suggested for the other.
const THRESHOLD: f64 = 0.8;

/// The candidate most similar to `typed`, when it is similar enough and not `typed` itself.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != typed)
        .map(|c| (strsim::jaro_winkler(typed, c), c))
        .filter(|(score, _)| *score >= THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_close_word_only() {
        let words = ["describe", "doctor", "dead-letters", "call"];
        assert_eq!(closest("descibe", words), Some("describe"));
        assert_eq!(closest("dcotor", words), Some("doctor"));
        assert_eq!(closest("zzz", words), None);
        assert_eq!(closest("call", words), None);
        assert_eq!(
            closest("greeter:gret", ["greeter:greet", "notes:save"]),
            Some("greeter:greet")
        );
    }
}
