//! "Did you mean …?" — the cheapest hint there is, and usually the right one for a typo.

/// The candidate closest to `wrong` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean \`x\`? ` or nothing, ready to prefix another hint.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(wrong, candidates).map_or_else(String::new, |c| format!("did you mean `{c}`? "))
}

/// Edit distance counting a swap of neighbours as one edit (optimal string alignment, strsim's
/// `osa_distance`), since `nmae` for `name` is the most common typo of all.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_but_not_strangers() {
        assert_eq!(closest("pasword_env", ["password_env", "host"]), Some("password_env"));
        assert_eq!(closest("bronze.claim", ["bronze.claims", "silver.claims"]), Some("bronze.claims"));
        assert_eq!(closest("xyz", ["host", "port"]), None);
    }
}
