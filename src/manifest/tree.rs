//! The YAML trees of a manifest built straight from the parser's events, for the plain YAML that
//! manifests are: the same `serde_yaml::Value`s serde_yaml would build, at a third of the cost
//! (serde_yaml first copies every event of a document, then builds the tree through serde). Anything
//! where the two could differ is declined, and the caller lets serde_yaml parse the file:
//! anchors and aliases, explicit tags, directives, duplicate keys, deep nesting, syntax errors (whose
//! message and place serde_yaml gives), and an empty stream.

use super::events::{Event, Events, Style};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// Deeper than this is declined: serde_yaml refuses nesting past 128 levels, with its own message.
const MAX_DEPTH: usize = 100;

/// A collection being built.
enum Open {
    Sequence(Vec<Value>),
    /// The mapping so far, and a key waiting for its value.
    Mapping(Mapping, Option<Value>),
}

/// Every document of `text`, as `serde_yaml::Deserializer::from_str(text)` would give them through
/// `Value::deserialize`; `None` where this cannot be sure of giving the same.
pub(super) fn documents(text: &str) -> Option<Vec<Value>> {
    let mut events = Events::new(text)?;
    let mut docs = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut root: Option<Value> = None;
    while let Some(outcome) = events.next(|event, _| step(event, &mut open)) {
        let node = match outcome? {
            Step::Nothing => continue,
            Step::DocumentEnd => {
                docs.push(root.take()?);
                continue;
            }
            Step::Node(node) => node,
        };
        match open.last_mut() {
            None if root.is_none() => root = Some(node),
            None => return None,
            Some(Open::Sequence(items)) => items.push(node),
            Some(Open::Mapping(_, key @ None)) => *key = Some(node),
            Some(Open::Mapping(map, key)) => {
                let key = key.take().expect("the arm above takes a missing key");
                // serde_yaml refuses a repeated key, with its own message.
                if map.insert(key, node).is_some() {
                    return None;
                }
            }
        }
    }
    // Only a stream read to its end (not one cut short by a syntax error), with every document
    // closed, and at least one of them.
    (events.finished() && open.is_empty() && root.is_none() && !docs.is_empty()).then_some(docs)
}

/// What one event does to the tree being built.
enum Step {
    Nothing,
    /// A scalar, or a collection just closed: it goes where the open collection says.
    Node(Value),
    DocumentEnd,
}

/// `None` declines the text.
fn step(event: Event<'_>, open: &mut Vec<Open>) -> Option<Step> {
    match event {
        Event::StreamStart | Event::StreamEnd => Some(Step::Nothing),
        Event::DocumentStart { directives } => (!directives).then_some(Step::Nothing),
        Event::DocumentEnd => Some(Step::DocumentEnd),
        Event::Alias => None,
        Event::Scalar {
            value,
            style,
            tag,
            anchor,
        } => {
            if tag.is_some() || anchor {
                return None;
            }
            let text = std::str::from_utf8(value).ok()?;
            Some(Step::Node(match style {
                Style::Plain => plain(text)?,
                Style::Other => Value::String(text.to_owned()),
            }))
        }
        Event::SequenceStart { tag, anchor } | Event::MappingStart { tag, anchor } => {
            if tag.is_some() || anchor || open.len() >= MAX_DEPTH {
                return None;
            }
            open.push(match event {
                Event::SequenceStart { .. } => Open::Sequence(Vec::new()),
                _ => Open::Mapping(Mapping::new(), None),
            });
            Some(Step::Nothing)
        }
        Event::SequenceEnd => match open.pop()? {
            Open::Sequence(items) => Some(Step::Node(Value::Sequence(items))),
            Open::Mapping(..) => None,
        },
        Event::MappingEnd => match open.pop()? {
            Open::Mapping(map, None) => Some(Step::Node(Value::Mapping(map))),
            Open::Mapping(_, Some(_)) | Open::Sequence(_) => None,
        },
    }
}

/// Whether what `documents` builds of `text`, if anything, is what serde_yaml builds: the fuzzer's
/// check of this module (compared by debug form, so that a NaN equals the NaN it was read as).
pub(crate) fn agrees_with_serde_yaml(text: &str) -> bool {
    let Some(built) = documents(text) else {
        return true;
    };
    let serde: Result<Vec<Value>, _> = serde_yaml::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect();
    serde.is_ok_and(|serde| format!("{built:?}") == format!("{serde:?}"))
}

/// A plain (unquoted) scalar, resolved as serde_yaml resolves it: null, a boolean, a number, or a
/// string. A word that begins with a letter is a string unless it is one of the words below; the
/// rest (digits, signs, dots: numbers and what merely looks like them) is resolved by serde_yaml
/// itself, one scalar at a time.
fn plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let starts_with_letter = text.as_bytes()[0].is_ascii_alphabetic();
    // Rust's float parser, under serde_yaml's, reads these (in any case) as numbers.
    let float_word = ["inf", "infinity", "nan"]
        .iter()
        .any(|w| text.eq_ignore_ascii_case(w));
    if starts_with_letter && !float_word {
        return Some(Value::String(text.to_owned()));
    }
    // A plain scalar holds no line break, `: ` or ` #`, nor leading or trailing space, so as the
    // value of a one-key mapping it is the same plain scalar (where alone, `---` or `...` would be a
    // document marker): serde_yaml resolves it as it would have in place.
    if text.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) || text.trim() != text {
        return None;
    }
    let Value::Mapping(map) = serde_yaml::from_str::<Value>(&format!("k: {text}")).ok()? else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    match map.get("k")? {
        v @ (Value::Null | Value::Bool(_) | Value::Number(_)) => Some(v.clone()),
        Value::String(s) if s == text => Some(Value::String(s.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_manifest_in_block_and_flow_style_is_built_as_serde_yaml_builds_it() {
        let text = "# links\nprojects:\n  - groupId: 5f0c9a1b2c3d4e5f6a7b8c9d\n    label: Payments team\n    defaults: {provider: AWS, vendor: S3, region: us-east-1}\n    links:\n      - name: orders\n        region: null\n        dnsSubDomain: [use1-az1, 'use1-az2', \"x\"]\n        arn: arn:aws:kafka:us-east-1:123456789012:cluster/c/1\n      - {name: 0001, vendor: MSK, count: 12, ratio: 1.5, on: true, off: ~, empty: }\n      - name: |\n          folded\n          text\n---\nprojects: []\n";
        let built = documents(text).expect("plain YAML is built here, not declined");
        assert_eq!(built.len(), 2);
        assert!(agrees_with_serde_yaml(text));
    }

    #[test]
    fn what_could_read_otherwise_is_declined() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\na: 2\n",
            "a: [1, 2\n",
            "",
            "# only a comment\n",
            &"[".repeat(MAX_DEPTH + 1),
        ] {
            assert_eq!(documents(text), None, "{text:?}");
        }
    }

    /// Scalars of every kind serde_yaml resolves, and look-alikes.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "null",
                "Null",
                "NULL",
                "nULL",
                "~",
                "",
                "true",
                "True",
                "TRUE",
                "tRUE",
                "false",
                "yes",
                "no",
                "on",
                "off",
                "y",
                "n",
                "inf",
                "-inf",
                "+inf",
                ".inf",
                "-.Inf",
                "Infinity",
                "NaN",
                ".nan",
                "nan",
                "0",
                "-0",
                "+1",
                "007",
                "0x1f",
                "0X1F",
                "0o17",
                "0b101",
                "1_000",
                "1e5",
                "1E-5",
                "e5",
                "1.",
                ".5",
                "1.5.2",
                "12:30",
                "2024-01-01",
                "0x",
                "-",
                "--",
                "99999999999999999999999",
                "5f0c9a1b2c3d4e5f6a7b8c9d",
                "123456789012",
                "a b",
                "a:b",
                "us-east-1",
                "link-0001",
                "arn:aws:s3:::b",
                "'q'",
                "\"d\"",
                "é",
                "1 # c",
                // Document markers and indicators: alone, `---` and `...` are no scalar at all.
                "---",
                "...",
                "-- -",
                ":x",
                "?x",
                "-.",
                "+",
                ".",
                "0.",
                "1:",
            ])
            .prop_map(str::to_owned),
            "[a-z0-9.+_-]{1,8}",
        ]
    }

    /// A scalar written plain, quoted, or in flow.
    fn written(s: &str, how: usize) -> String {
        match how {
            0 => s.to_owned(),
            1 => format!("'{}'", s.replace('\'', "''")),
            _ => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    /// A text of `documents_n` documents made of `entries`, in block and flow style.
    fn render(entries: &[(String, usize, String, usize, usize)], documents_n: usize) -> String {
        let mut text = String::new();
        for d in 0..documents_n {
            if d > 0 {
                text.push_str("---\n");
            }
            for (k, kh, v, vh, shape) in entries {
                let (k, v) = (written(k, *kh), written(v, *vh));
                match shape {
                    0 => text.push_str(&format!("{k}: {v}\n")),
                    1 => text.push_str(&format!("{k}:\n  - {v}\n  - [{v}, {v}]\n")),
                    2 => text.push_str(&format!("{k}: {{x: {v}, y: [{v}]}}\n")),
                    _ => text.push_str(&format!("{k}:\n  inner: {v}\n")),
                }
            }
        }
        text
    }

    /// Whatever is built here is what serde_yaml builds; declining is always allowed, but most texts
    /// (those without a repeated key) must be built, or the quick path would be dead code.
    #[test]
    fn what_is_built_is_what_serde_yaml_builds() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
        let built = std::cell::Cell::new(0usize);
        let strategy = (
            prop::collection::vec((scalar(), 0..3usize, scalar(), 0..3usize, 0..4usize), 1..6),
            1..3usize,
        );
        runner
            .run(&strategy, |(entries, documents_n)| {
                let text = render(&entries, documents_n);
                if documents(&text).is_some() {
                    built.set(built.get() + 1);
                }
                prop_assert!(agrees_with_serde_yaml(&text), "{}", text);
                Ok(())
            })
            .unwrap();
        assert!(
            built.get() > 128,
            "only {} of 512 texts were built",
            built.get()
        );
    }
}
