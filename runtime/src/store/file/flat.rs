//! A faster decoding of a journal record's payload into an [`Event`].
//!
//! `Event` is an internally tagged enum, which serde decodes by buffering every field of the
//! record first (its `Content`), then decoding the variant from that buffer: about half the
//! time of reading a journal. minder writes the tag first (`{"event":"step_started",...}`),
//! so here the tag is read first and the rest of the record decoded straight into the
//! variant's fields, declared as the enum declares them. Whenever that does not work (the
//! tag is not the first field, an unknown tag, a missing field, anything the decoding
//! refuses), the payload is decoded again the derived way, so the result — the event, or the
//! error — is always the derived decoding's.
//!
//! The field structs below mirror `Event`'s variants, attributes included: a field added to
//! `Event` does not compile here until it is added (the events are built field by field); a
//! new variant takes the derived way until it is added; the tests check that every variant,
//! every optional field set, decodes to itself.

use crate::journal::{Event, Outcome};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The event of a record's payload, exactly as `serde_json::from_slice::<Event>` decodes it.
pub(super) fn decode_event(payload: &[u8]) -> Result<Event, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let fast = de::Deserializer::deserialize_map(&mut de, TagFirst)
        .and_then(|event| de.end().map(|()| event));
    match fast {
        Ok(event) => Ok(event),
        Err(_) => serde_json::from_slice(payload),
    }
}

/// The fields of each event, with the types and defaults `Event` gives them.
mod fields {
    use super::*;
    use serde::{Deserialize, Deserializer};

    /// A second `event` field: the derived decoding refuses it (a duplicate tag), so it sends
    /// the record there.
    #[derive(Default)]
    pub(super) struct NoTag;

    impl<'de> Deserialize<'de> for NoTag {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(de::Error::custom("a second tag"))
        }
    }

    #[derive(Deserialize)]
    pub(super) struct RunCreated {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) run_id: String,
        pub(super) process: String,
        pub(super) input: Value,
        pub(super) fingerprint: String,
        #[serde(default)]
        pub(super) queue: Option<String>,
        #[serde(default)]
        pub(super) priority: Option<i32>,
        #[serde(default)]
        pub(super) parent: Option<crate::journal::ParentLink>,
    }
    #[derive(Deserialize)]
    pub(super) struct StepStarted {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) task: String,
        pub(super) location: String,
        pub(super) args: Value,
        #[serde(default)]
        pub(super) seq: Option<u32>,
        #[serde(default)]
        pub(super) node: Option<u32>,
    }
    #[derive(Deserialize)]
    pub(super) struct KeyOutcome {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) outcome: Outcome,
    }
    #[derive(Deserialize)]
    pub(super) struct AttemptFailed {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) attempt: u32,
        pub(super) error: Value,
    }
    #[derive(Deserialize)]
    pub(super) struct Key {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
    }
    #[derive(Deserialize)]
    pub(super) struct ChildStarted {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) pgid: u32,
        pub(super) program: String,
        #[serde(default)]
        pub(super) started: Option<u64>,
        #[serde(default)]
        pub(super) boot_id: Option<String>,
        #[serde(default)]
        pub(super) pid_ns: Option<u64>,
    }
    #[derive(Deserialize)]
    pub(super) struct Recorded {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) value: Value,
        #[serde(default)]
        pub(super) seq: Option<u32>,
        #[serde(default)]
        pub(super) location: Option<String>,
        #[serde(default)]
        pub(super) node: Option<u32>,
    }
    #[derive(Deserialize)]
    pub(super) struct Log {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) message: String,
        #[serde(default)]
        pub(super) seq: Option<u32>,
        #[serde(default)]
        pub(super) location: Option<String>,
        #[serde(default)]
        pub(super) node: Option<u32>,
    }
    #[derive(Deserialize)]
    pub(super) struct EffectRequested {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) key: String,
        pub(super) kind: String,
        pub(super) name: String,
        pub(super) input: Value,
        #[serde(default)]
        pub(super) due_ms: Option<u64>,
        #[serde(default)]
        pub(super) seq: Option<u32>,
        #[serde(default)]
        pub(super) location: Option<String>,
        #[serde(default)]
        pub(super) node: Option<u32>,
    }
    #[derive(Deserialize)]
    pub(super) struct Suspended {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) waiting: Vec<String>,
        #[serde(default)]
        pub(super) due_ms: Option<u64>,
    }
    #[derive(Deserialize)]
    pub(super) struct RunCompleted {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) output: Value,
    }
    #[derive(Deserialize)]
    pub(super) struct RunCancelled {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) reason: Option<String>,
    }
    #[derive(Deserialize)]
    pub(super) struct RunFailed {
        #[serde(default, rename = "event")]
        pub(super) _tag: NoTag,
        pub(super) error: String,
    }
}

/// Reads `{"event": <tag>, <the variant's fields>...}`.
struct TagFirst;

impl<'de> Visitor<'de> for TagFirst {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a journal event, its tag first")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        if map.next_key::<&str>()? != Some("event") {
            return Err(de::Error::custom("the tag is not first"));
        }
        let tag: &str = map.next_value()?;
        fn rest<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
        Ok(match tag {
            "run_created" => {
                let f: fields::RunCreated = rest(map)?;
                Event::RunCreated {
                    run_id: f.run_id,
                    process: f.process,
                    input: f.input,
                    fingerprint: f.fingerprint,
                    queue: f.queue,
                    priority: f.priority,
                    parent: f.parent,
                }
            }
            "step_started" => {
                let f: fields::StepStarted = rest(map)?;
                Event::StepStarted {
                    key: f.key,
                    task: f.task,
                    location: f.location,
                    args: f.args,
                    seq: f.seq,
                    node: f.node,
                }
            }
            "step_completed" => {
                let f: fields::KeyOutcome = rest(map)?;
                Event::StepCompleted {
                    key: f.key,
                    outcome: f.outcome,
                }
            }
            "attempt_failed" => {
                let f: fields::AttemptFailed = rest(map)?;
                Event::AttemptFailed {
                    key: f.key,
                    attempt: f.attempt,
                    error: f.error,
                }
            }
            "step_cancelled" => {
                let f: fields::Key = rest(map)?;
                Event::StepCancelled { key: f.key }
            }
            "child_started" => {
                let f: fields::ChildStarted = rest(map)?;
                Event::ChildStarted {
                    key: f.key,
                    pgid: f.pgid,
                    program: f.program,
                    started: f.started,
                    boot_id: f.boot_id,
                    pid_ns: f.pid_ns,
                }
            }
            "recorded" => {
                let f: fields::Recorded = rest(map)?;
                Event::Recorded {
                    key: f.key,
                    value: f.value,
                    seq: f.seq,
                    location: f.location,
                    node: f.node,
                }
            }
            "log" => {
                let f: fields::Log = rest(map)?;
                Event::Log {
                    key: f.key,
                    message: f.message,
                    seq: f.seq,
                    location: f.location,
                    node: f.node,
                }
            }
            "effect_requested" => {
                let f: fields::EffectRequested = rest(map)?;
                Event::EffectRequested {
                    key: f.key,
                    kind: f.kind,
                    name: f.name,
                    input: f.input,
                    due_ms: f.due_ms,
                    seq: f.seq,
                    location: f.location,
                    node: f.node,
                }
            }
            "effect_resolved" => {
                let f: fields::KeyOutcome = rest(map)?;
                Event::EffectResolved {
                    key: f.key,
                    outcome: f.outcome,
                }
            }
            "suspended" => {
                let f: fields::Suspended = rest(map)?;
                Event::Suspended {
                    waiting: f.waiting,
                    due_ms: f.due_ms,
                }
            }
            "run_completed" => {
                let f: fields::RunCompleted = rest(map)?;
                Event::RunCompleted { output: f.output }
            }
            "run_cancelled" => {
                let f: fields::RunCancelled = rest(map)?;
                Event::RunCancelled { reason: f.reason }
            }
            "run_failed" => {
                let f: fields::RunFailed = rest(map)?;
                Event::RunFailed { error: f.error }
            }
            _ => return Err(de::Error::custom("not a tag of this build")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every variant, with every optional field set, decodes to itself (a field renamed in
    /// `Event` but not here would fail this).
    #[test]
    fn every_event_written_decodes_to_itself() {
        let s = |t: &str| t.to_string();
        let events = vec![
            Event::RunCreated {
                run_id: s("r"),
                process: s("p"),
                input: json!({"n": [1, 2.5]}),
                fingerprint: s("f"),
                queue: Some(s("q")),
                priority: Some(-3),
                parent: Some(crate::journal::ParentLink {
                    run_id: s("p"),
                    key: s("c#0"),
                }),
            },
            Event::StepStarted {
                key: s("k"),
                task: s("t"),
                location: s("l"),
                args: json!([1]),
                seq: Some(2),
                node: Some(4),
            },
            Event::StepCompleted {
                key: s("k"),
                outcome: Outcome::Err(json!("e")),
            },
            Event::AttemptFailed {
                key: s("k"),
                attempt: 1,
                error: json!({"m": 1}),
            },
            Event::StepCancelled { key: s("k") },
            Event::ChildStarted {
                key: s("k"),
                pgid: 7,
                program: s("sh"),
                started: Some(9),
                boot_id: Some(s("b")),
                pid_ns: Some(4),
            },
            Event::Recorded {
                key: s("k"),
                value: json!(5),
                seq: Some(1),
                location: Some(s("l")),
                node: Some(5),
            },
            Event::Log {
                key: s("k"),
                message: s("m"),
                seq: Some(1),
                location: Some(s("l")),
                node: Some(6),
            },
            Event::EffectRequested {
                key: s("k"),
                kind: s("breakpoint"),
                name: s("n"),
                input: json!(null),
                due_ms: Some(3),
                seq: Some(0),
                location: Some(s("l")),
                node: Some(7),
            },
            Event::EffectResolved {
                key: s("k"),
                outcome: Outcome::Ok(json!(true)),
            },
            Event::Suspended {
                waiting: vec![s("a")],
                due_ms: Some(8),
            },
            Event::RunCompleted { output: json!(1) },
            Event::RunCancelled {
                reason: Some(s("r")),
            },
            Event::RunFailed { error: s("e") },
        ];
        for event in events {
            let bytes = serde_json::to_vec(&event).unwrap();
            let mut de = serde_json::Deserializer::from_slice(&bytes);
            let fast = de::Deserializer::deserialize_map(&mut de, TagFirst)
                .unwrap_or_else(|e| panic!("{event:?} took the derived way: {e}"));
            assert_eq!(fast, event);
        }
    }

    /// Every event kind, with optional fields present, absent and null, and records the
    /// derived decoding refuses or reads differently: both decodings agree on all of them.
    #[test]
    fn the_flat_decoding_is_the_derived_one() {
        let events = [
            json!({"event":"run_created","run_id":"r","process":"p","input":null,"fingerprint":"f"}),
            json!({"event":"run_created","run_id":"r","process":"p","input":{"a":[1,2.5,"x"]},"fingerprint":"f"}),
            json!({"event":"run_created","run_id":"r","process":"p","fingerprint":"f"}),
            json!({"event":"step_started","key":"k","task":"t","location":"l","args":null}),
            json!({"event":"step_started","key":"k","task":"t","location":"l","args":[1],"seq":3}),
            json!({"event":"step_started","key":"k","task":"t","location":null,"args":[1]}),
            json!({"event":"step_started","key":"k","task":"t","location":"l","args":[1],"seq":null}),
            json!({"event":"step_started","key":"k","task":"t","location":"l","args":[1],"seq":-1}),
            json!({"event":"step_started","key":"k","task":"t","args":[1]}),
            json!({"event":"step_completed","key":"k","outcome":{"ok":null}}),
            json!({"event":"step_completed","key":"k","outcome":{"err":{"m":1}},"task":5}),
            json!({"event":"step_completed","key":"k","outcome":{"maybe":1}}),
            json!({"event":"attempt_failed","key":"k","attempt":0,"error":"e"}),
            json!({"event":"attempt_failed","key":"k","attempt":0,"error":null}),
            json!({"event":"step_cancelled","key":"k"}),
            json!({"event":"child_started","key":"k","pgid":4,"program":"p"}),
            json!({"event":"child_started","key":"k","pgid":4,"program":"p","started":9,"boot_id":"b","pid_ns":7}),
            json!({"event":"recorded","key":"k","value":null}),
            json!({"event":"recorded","key":"k","value":1,"seq":0,"location":"l"}),
            json!({"event":"recorded","key":"k"}),
            json!({"event":"log","key":"k","message":"m\n\"é\""}),
            json!({"event":"log","key":"k","message":null}),
            json!({"event":"effect_requested","key":"k","kind":"breakpoint","name":"n","input":null,"due_ms":5}),
            json!({"event":"effect_resolved","key":"k","outcome":{"ok":"approved"}}),
            json!({"event":"suspended","waiting":["a","b"]}),
            json!({"event":"suspended","waiting":[],"due_ms":1}),
            json!({"event":"suspended"}),
            json!({"event":"run_completed","output":null}),
            json!({"event":"run_completed"}),
            json!({"event":"run_cancelled","reason":null}),
            json!({"event":"run_cancelled","reason":"why"}),
            json!({"event":"run_cancelled"}),
            json!({"event":"run_cancelled","reason":3}),
            json!({"event":"run_failed","error":"e"}),
            json!({"event":"run_failed","error":{"e":1}}),
            json!({"event":"from_the_future","key":"k"}),
            json!({"key":"k","event":"step_cancelled"}),
            json!({"key":"k"}),
            json!([1, 2]),
        ];
        for value in events {
            let bytes = serde_json::to_vec(&value).unwrap();
            let derived = serde_json::from_slice::<Event>(&bytes).map_err(|e| e.to_string());
            let flat = decode_event(&bytes).map_err(|e| e.to_string());
            assert_eq!(flat, derived, "{value}");
        }
        // Not JSON at all, and a duplicate field.
        for bytes in [
            &b"{\"event\":"[..],
            br#"{"event":"step_cancelled","key":"a","key":"b"}"#,
            br#"{"event":"step_cancelled","key":"a","event":"log"}"#,
            br#"{"event":"step_cancelled","key":"a","event":"step_cancelled"}"#,
            br#"{"event":"step_cancelled","key":"a"} x"#,
            br#"{"event":"step_cancelled","key":"a"}  "#,
            br#"{"event":"step_cancelled","key":"a\n"}"#,
            br#"{"ev\u0065nt":"step_cancelled","key":"a"}"#,
            br#"{"event":"step\u005fcancelled","key":"a"}"#,
        ] {
            let derived = serde_json::from_slice::<Event>(bytes).map_err(|e| e.to_string());
            let flat = decode_event(bytes).map_err(|e| e.to_string());
            assert_eq!(flat, derived, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
