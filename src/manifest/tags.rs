//! Explicit YAML tags (`!!binary`, `!!str`, `!custom`): serde_yaml resolves or drops most of them
//! without a trace (`!!binary aGk=` reads as the string `aGk=`), so they are found here, from the
//! events of the YAML parser underneath it, to be refused with their line and column. A manifest
//! needs none: quoting says "text", and nothing else is ever meant.

use libyaml_rs as sys;
use std::mem::MaybeUninit;

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
    if !text.contains('!') {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut parser = Box::<sys::yaml_parser_t>::new_uninit();
    let p = parser.as_mut_ptr();
    // SAFETY: `p` points at memory owned by `parser`, which is boxed so the parser never moves while
    // initialised (libyaml keeps pointers into it); `yaml_parser_initialize` zeroes and sets it up.
    // The input outlives the parser (it is deleted before this function returns). This follows
    // serde_yaml's own wrapper of the same calls.
    unsafe {
        if sys::yaml_parser_initialize(p).fail {
            return found;
        }
        sys::yaml_parser_set_encoding(p, sys::YAML_UTF8_ENCODING);
        sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
    }
    loop {
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        let e = event.as_mut_ptr();
        // SAFETY: the parser was initialised above; an event is read only after a successful
        // `yaml_parser_parse` filled it, its tag (a NUL-terminated string owned by the event) only
        // for the event types whose union member holds one, and it is deleted exactly once.
        let done = unsafe {
            if sys::yaml_parser_parse(p, e).fail {
                break;
            }
            let ev = &*e;
            let tag = match ev.type_ {
                sys::YAML_SCALAR_EVENT => ev.data.scalar.tag,
                sys::YAML_SEQUENCE_START_EVENT => ev.data.sequence_start.tag,
                sys::YAML_MAPPING_START_EVENT => ev.data.mapping_start.tag,
                _ => std::ptr::null_mut(),
            };
            if !tag.is_null() {
                let tag = std::ffi::CStr::from_ptr(tag.cast::<std::ffi::c_char>());
                found.push(Tag {
                    line: usize::try_from(ev.start_mark.line).map_or(usize::MAX, |l| l + 1),
                    column: usize::try_from(ev.start_mark.column).map_or(usize::MAX, |c| c + 1),
                    tag: shorthand(&tag.to_string_lossy()),
                });
            }
            let done = ev.type_ == sys::YAML_STREAM_END_EVENT;
            sys::yaml_event_delete(e);
            done
        };
        if done {
            break;
        }
    }
    // SAFETY: initialised above and deleted once; no event of it is alive.
    unsafe { sys::yaml_parser_delete(p) };
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
