//! Explicit YAML tags (`!!binary`, `!!str`, `!custom`): serde_yaml resolves or drops most of them
//! without a trace (`!!binary aGk=` reads as the string `aGk=`), so they are found here, from the
//! events of the YAML parser underneath it, to be refused with their line and column. A manifest
//! needs none: quoting says "text", and nothing else is ever meant.

use super::events::Events;

/// One explicit tag: where it starts (1-based) and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tag {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) tag: String,
}

/// Every explicit tag of `text`, in order, up to the first syntax error (which the parse proper
/// reports). Costs nothing on a text without `!`, the usual case.
pub(super) fn explicit_tags(text: &str) -> Vec<Tag> {
    let mut found = Vec::new();
    if !text.contains('!') {
        return found;
    }
    let Some(mut events) = Events::new(text) else {
        return found;
    };
    while let Some(tag) = events.next(|event, at| {
        event.tag().map(|tag| Tag {
            line: at.line,
            column: at.column,
            tag: shorthand(&tag.to_string_lossy()),
        })
    }) {
        found.extend(tag);
    }
    found
}

/// A tag as the user wrote it: `!!binary` rather than the `tag:yaml.org,2002:binary` it resolves to.
fn shorthand(tag: &str) -> String {
    match tag.strip_prefix("tag:yaml.org,2002:") {
        Some(core) => format!("!!{core}"),
        None => tag.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_core_and_local_tags_with_their_place_and_nothing_in_quotes_or_comments() {
        let text = "# a comment! with !!binary\nprojects:\n  - groupId: !!binary aGk=\n    name: 'x !!str y'\n    links: !custom\n      - a\n  - !!map {groupId: \"!\"}\n";
        let tags = explicit_tags(text);
        let got: Vec<(usize, usize, &str)> = tags
            .iter()
            .map(|t| (t.line, t.column, t.tag.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(3, 14, "!!binary"), (5, 12, "!custom"), (7, 5, "!!map")]
        );
    }

    #[test]
    fn a_text_without_tags_has_none_even_with_exclamation_marks() {
        assert!(explicit_tags("a: b!c\nd: [\"!x\"]\n").is_empty());
        assert!(explicit_tags("projects: []\n").is_empty());
        // Stops quietly at a syntax error.
        assert!(explicit_tags("a: [!!str\n").len() <= 1);
    }
}
