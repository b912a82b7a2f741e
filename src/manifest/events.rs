//! The YAML parser's events (libyaml, the parser under serde_yaml), read safely one at a time: the
//! one place `unsafe` meets the parser. `tags` finds explicit tags in them, `tree` builds the YAML
//! tree from them.

use libyaml_rs as sys;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    /// Quoted, literal (`|`) or folded (`>`): text, whatever it reads like.
    Other,
}

/// One event, borrowing what libyaml holds of it.
pub(super) enum Event<'e> {
    StreamStart,
    StreamEnd,
    DocumentStart {
        /// A `%YAML` or `%TAG` directive came before the document.
        directives: bool,
    },
    DocumentEnd,
    Alias,
    Scalar {
        value: &'e [u8],
        style: Style,
        tag: Option<&'e CStr>,
        anchor: bool,
    },
    SequenceStart {
        tag: Option<&'e CStr>,
        anchor: bool,
    },
    SequenceEnd,
    MappingStart {
        tag: Option<&'e CStr>,
        anchor: bool,
    },
    MappingEnd,
}

impl Event<'_> {
    /// The explicit tag of a node.
    pub(super) fn tag(&self) -> Option<&CStr> {
        match self {
            Event::Scalar { tag, .. }
            | Event::SequenceStart { tag, .. }
            | Event::MappingStart { tag, .. } => *tag,
            _ => None,
        }
    }
}

/// Where an event starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) line: usize,
    pub(super) column: usize,
}

/// The events of one text, in order, up to its end or its first syntax error.
pub(super) struct Events<'t> {
    /// Boxed, so the parser never moves while initialised: libyaml keeps pointers into it.
    parser: Box<MaybeUninit<sys::yaml_parser_t>>,
    /// No further event will be read: the stream ended, or a syntax error cut it short.
    ended: bool,
    /// The stream's end was read.
    finished: bool,
    text: PhantomData<&'t str>,
}

impl<'t> Events<'t> {
    /// `None` only when libyaml cannot allocate its parser.
    pub(super) fn new(text: &'t str) -> Option<Events<'t>> {
        let mut parser = Box::<sys::yaml_parser_t>::new_uninit();
        let p = parser.as_mut_ptr();
        // SAFETY: `p` points at memory owned by `parser` (boxed: it never moves);
        // `yaml_parser_initialize` zeroes and sets it up. The input is borrowed for 't, which
        // outlives the parser (deleted in `drop`). This follows serde_yaml's own wrapper.
        unsafe {
            if sys::yaml_parser_initialize(p).fail {
                return None;
            }
            sys::yaml_parser_set_encoding(p, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
        }
        Some(Events {
            parser,
            ended: false,
            finished: false,
            text: PhantomData,
        })
    }

    /// Reads the next event and hands it to `read` while libyaml still holds its data. `None` after
    /// the end of the stream, and at a syntax error (which serde_yaml's parse reports).
    pub(super) fn next<R>(&mut self, read: impl FnOnce(Event<'_>, Mark) -> R) -> Option<R> {
        if self.ended {
            return None;
        }
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        let e = event.as_mut_ptr();
        // SAFETY: the parser was initialised in `new` and is not deleted before `drop`. The event is
        // read only after a successful `yaml_parser_parse` filled it; each union member is read
        // only for the event type that holds it; its strings (NUL-terminated, or `value` with its
        // `length`) are owned by the event and borrowed only until `yaml_event_delete`, which runs
        // exactly once, after `read`.
        unsafe {
            if sys::yaml_parser_parse(self.parser.as_mut_ptr(), e).fail {
                self.ended = true;
                return None;
            }
            let ev = &*e;
            let cstr =
                |p: *mut u8| (!p.is_null()).then(|| CStr::from_ptr(p.cast::<std::ffi::c_char>()));
            let event = match ev.type_ {
                sys::YAML_STREAM_START_EVENT => Event::StreamStart,
                sys::YAML_STREAM_END_EVENT => Event::StreamEnd,
                sys::YAML_DOCUMENT_START_EVENT => {
                    let d = ev.data.document_start;
                    Event::DocumentStart {
                        directives: !d.version_directive.is_null()
                            || d.tag_directives.start != d.tag_directives.end,
                    }
                }
                sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
                sys::YAML_ALIAS_EVENT => Event::Alias,
                sys::YAML_SCALAR_EVENT => {
                    let s = ev.data.scalar;
                    let value = if s.value.is_null() || s.length == 0 {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(s.value, s.length as usize)
                    };
                    Event::Scalar {
                        value,
                        style: if s.style == sys::YAML_PLAIN_SCALAR_STYLE {
                            Style::Plain
                        } else {
                            Style::Other
                        },
                        tag: cstr(s.tag),
                        anchor: !s.anchor.is_null(),
                    }
                }
                sys::YAML_SEQUENCE_START_EVENT => {
                    let s = ev.data.sequence_start;
                    Event::SequenceStart {
                        tag: cstr(s.tag),
                        anchor: !s.anchor.is_null(),
                    }
                }
                sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                sys::YAML_MAPPING_START_EVENT => {
                    let m = ev.data.mapping_start;
                    Event::MappingStart {
                        tag: cstr(m.tag),
                        anchor: !m.anchor.is_null(),
                    }
                }
                sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                // No other event type exists; one would end the reading, never be misread.
                _ => {
                    sys::yaml_event_delete(e);
                    self.ended = true;
                    return None;
                }
            };
            self.finished = matches!(event, Event::StreamEnd);
            self.ended = self.finished;
            let mark = Mark {
                line: usize::try_from(ev.start_mark.line).map_or(usize::MAX, |l| l + 1),
                column: usize::try_from(ev.start_mark.column).map_or(usize::MAX, |c| c + 1),
            };
            let read = read(event, mark);
            sys::yaml_event_delete(e);
            Some(read)
        }
    }
}

impl Events<'_> {
    /// Whether the whole text was read: the end of its stream, with no syntax error before it.
    pub(super) fn finished(&self) -> bool {
        self.finished
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (an `Events` exists only then) and deleted only here; no
        // event of it is alive (each is deleted inside `next`).
        unsafe { sys::yaml_parser_delete(self.parser.as_mut_ptr()) };
    }
}
