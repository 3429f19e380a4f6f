//! A faster decoding of a journal record's payload into an [`Event`].
//!
//! `Event` is an internally tagged enum, which serde decodes by buffering every field of the
//! record first (its `Content`), then decoding the variant from that buffer: about half the
//! time of reading a journal. Here a record is decoded in one pass into [`Flat`], a struct
//! with every field any event has, and the event is assembled from it. Whenever anything is
//! not exactly as the derived decoding would take it (an unknown tag, a missing or null
//! field, a field of another type), the payload is decoded again the derived way, so the
//! result — the event, or the error — is always the derived decoding's.

use crate::journal::{Event, Outcome};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A field that may be absent (`None`) or present with any value, `null` included
/// (`Some(Value::Null)`), unlike a plain `Option<Value>`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Every field of every event. Strings that may be `null` where present are `Option`s whose
/// `None` sends the record to the derived decoding when the event requires the field.
#[derive(Deserialize)]
struct Flat {
    event: String,
    key: Option<String>,
    run_id: Option<String>,
    process: Option<String>,
    #[serde(default, deserialize_with = "present")]
    input: Option<Value>,
    fingerprint: Option<String>,
    task: Option<String>,
    location: Option<String>,
    #[serde(default, deserialize_with = "present")]
    args: Option<Value>,
    seq: Option<u32>,
    outcome: Option<Outcome>,
    attempt: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
    pgid: Option<u32>,
    program: Option<String>,
    started: Option<u64>,
    boot_id: Option<String>,
    pid_ns: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
    message: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    due_ms: Option<u64>,
    waiting: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    output: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    reason: Option<Value>,
}

/// The event of a record's payload, exactly as `serde_json::from_slice::<Event>` decodes it.
pub(super) fn decode_event(payload: &[u8]) -> Result<Event, serde_json::Error> {
    match serde_json::from_slice::<Flat>(payload)
        .ok()
        .and_then(assemble)
    {
        Some(event) => Ok(event),
        None => serde_json::from_slice(payload),
    }
}

/// The event `flat` holds, if every field its kind requires is there with its type.
fn assemble(f: Flat) -> Option<Event> {
    Some(match f.event.as_str() {
        "run_created" => Event::RunCreated {
            run_id: f.run_id?,
            process: f.process?,
            input: f.input?,
            fingerprint: f.fingerprint?,
        },
        "step_started" => Event::StepStarted {
            key: f.key?,
            task: f.task?,
            location: f.location?,
            args: f.args?,
            seq: f.seq,
        },
        "step_completed" => Event::StepCompleted {
            key: f.key?,
            outcome: f.outcome?,
        },
        "attempt_failed" => Event::AttemptFailed {
            key: f.key?,
            attempt: f.attempt?,
            error: f.error?,
        },
        "step_cancelled" => Event::StepCancelled { key: f.key? },
        "child_started" => Event::ChildStarted {
            key: f.key?,
            pgid: f.pgid?,
            program: f.program?,
            started: f.started,
            boot_id: f.boot_id,
            pid_ns: f.pid_ns,
        },
        "recorded" => Event::Recorded {
            key: f.key?,
            value: f.value?,
            seq: f.seq,
            location: f.location,
        },
        "log" => Event::Log {
            key: f.key?,
            message: f.message?,
            seq: f.seq,
            location: f.location,
        },
        "effect_requested" => Event::EffectRequested {
            key: f.key?,
            kind: f.kind?,
            name: f.name?,
            input: f.input?,
            due_ms: f.due_ms,
            seq: f.seq,
            location: f.location,
        },
        "effect_resolved" => Event::EffectResolved {
            key: f.key?,
            outcome: f.outcome?,
        },
        "suspended" => Event::Suspended {
            waiting: f.waiting?,
            due_ms: f.due_ms,
        },
        "run_completed" => Event::RunCompleted { output: f.output? },
        "run_cancelled" => Event::RunCancelled {
            reason: match f.reason {
                None | Some(Value::Null) => None,
                Some(Value::String(reason)) => Some(reason),
                Some(_) => return None,
            },
        },
        "run_failed" => Event::RunFailed {
            error: match f.error? {
                Value::String(error) => error,
                _ => return None,
            },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        ] {
            let derived = serde_json::from_slice::<Event>(bytes).map_err(|e| e.to_string());
            let flat = decode_event(bytes).map_err(|e| e.to_string());
            assert_eq!(flat, derived);
        }
    }
}
