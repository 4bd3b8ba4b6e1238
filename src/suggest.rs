//! Did-you-mean: the closest known word to one a user wrote, when it is close
//! enough to be a typo. Used for keys, kinds, stage names, option values and
//! placeholders, so every "did you mean" in conveyor is chosen the same way.

/// The closest candidate to `word`, if one is close enough to be a typo.
///
/// Close enough: at most a third of the word's length (and at least one or
/// two) edits away, counting a swap of neighbours as one edit, and fewer
/// edits than the longer of the two has letters (a rewrite is no typo).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The help line for a word that matches nothing: "did you mean `x`?".
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_only_close_words() {
        assert_eq!(suggest("widht", ["width", "height"]), Some("width"));
        assert_eq!(suggest("zzz", ["width", "height"]), None);
    }

    #[test]
    fn did_you_mean_words_the_help() {
        assert_eq!(
            did_you_mean("scna", ["scan", "read"]).as_deref(),
            Some("did you mean `scan`?")
        );
    }
}
