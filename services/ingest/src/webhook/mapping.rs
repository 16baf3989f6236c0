//! A source's mapping: how a platform's JSON payload becomes one `ActivityEvent`.
//!
//! A mapping names, per payload type, where each event field comes from: a JSON pointer into
//! the payload or a constant, converted (hundredths to a decimal, Unix time or any RFC 3339
//! offset to a timestamp). [`check`] refuses a mapping that could never produce an event
//! before it is stored; [`apply`] builds the event in the proto3 JSON form and reads it with
//! the event's own descriptor, so every field is parsed the way the HTTP API parses it, and the
//! event then goes through the same validation as any other.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::ingest::v1::{
    Conversion, FieldMapping, WebhookMapping, WebhookRule, field_mapping,
};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// One thing wrong, as the (field, description) of a `google.rpc.BadRequest` violation.
pub type Violation = (String, String);

/// Fields a mapping may not set: ingest sets them.
const SET_BY_INGEST: [&str; 3] = ["tenant_id", "source", "accepted_at"];
/// Fields every rule must map.
const REQUIRED: [&str; 2] = ["partner_id", "occurred_at"];
/// The oneof of the event's payload kinds.
const PAYLOAD_ONEOF: &str = "payload";

static ACTIVITY_EVENT: LazyLock<MessageDescriptor> = LazyLock::new(|| {
    DescriptorPool::decode(mentorstream_proto::FILE_DESCRIPTOR_SET)
        .ok()
        .and_then(|pool| pool.get_message_by_name("mentorstream.activity.v1.ActivityEvent"))
        .unwrap_or_else(|| unreachable!("the embedded descriptors hold ActivityEvent"))
});

/// What a mapped field holds, as far as conversions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Timestamp,
    Decimal,
    Plain,
}

/// An event made from a payload, and where each of its fields came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub event: ActivityEvent,
    /// (event field, payload pointer) of every field taken from the payload.
    pub origins: Vec<(String, String)>,
}

/// Everything that makes `mapping` unusable, named by its path in the request (`prefix`).
pub fn check(mapping: &WebhookMapping, prefix: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut refuse = |field: String, description: String| violations.push((field, description));
    if !mapping.type_pointer.is_empty() && !mapping.type_pointer.starts_with('/') {
        refuse(
            format!("{prefix}.type_pointer"),
            "must be a JSON pointer such as /type (or empty)".to_owned(),
        );
    }
    if mapping.rules.is_empty() {
        refuse(
            format!("{prefix}.rules"),
            "needs at least one rule".to_owned(),
        );
    }
    let mut types = BTreeSet::new();
    for (index, rule) in mapping.rules.iter().enumerate() {
        let path = format!("{prefix}.rules[{index}]");
        if mapping.type_pointer.is_empty() != rule.type_value.is_empty() {
            refuse(
                format!("{path}.type_value"),
                "is empty exactly when type_pointer is empty".to_owned(),
            );
        }
        if !types.insert(rule.type_value.as_str()) {
            refuse(
                format!("{path}.type_value"),
                format!("`{}` is mapped by an earlier rule", rule.type_value),
            );
        }
        for (field, description) in check_rule(rule) {
            refuse(format!("{path}.{field}"), description);
        }
    }
    violations
}

fn check_rule(rule: &WebhookRule) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, mapped) in rule.fields.iter().enumerate() {
        let path = format!("fields[{index}]");
        if !seen.insert(mapped.field.as_str()) {
            violations.push((
                format!("{path}.field"),
                format!("`{}` is mapped twice", mapped.field),
            ));
        }
        if let Err(description) = check_field(mapped) {
            violations.push((path, description));
        }
    }
    for required in REQUIRED {
        if !seen.contains(required) {
            violations.push(("fields".to_owned(), format!("must map `{required}`")));
        }
    }
    let kinds = payload_kinds(rule);
    if kinds.len() != 1 {
        violations.push((
            "fields".to_owned(),
            format!(
                "must map the fields of exactly one payload kind (order_placed, \
                 order_refunded, partner_enrolled, rank_achieved, module_completed, \
                 event_attended, activity_ping), got {}",
                if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                }
            ),
        ));
    }
    violations
}

fn check_field(mapped: &FieldMapping) -> Result<(), String> {
    let target = target(&mapped.field)?;
    match &mapped.value {
        None => return Err("needs a pointer or a constant".to_owned()),
        Some(field_mapping::Value::Pointer(pointer)) if !pointer.starts_with('/') => {
            return Err(format!(
                "pointer must be a JSON pointer such as /data/id, got `{pointer}`"
            ));
        }
        Some(_) => {}
    }
    let conversion = Conversion::try_from(mapped.conversion)
        .map_err(|_| format!("unknown conversion {}", mapped.conversion))?;
    let fits = match conversion {
        Conversion::Unspecified => true,
        Conversion::Hundredths => target == Target::Decimal,
        Conversion::UnixSeconds | Conversion::UnixMillis | Conversion::Rfc3339 => {
            target == Target::Timestamp
        }
    };
    if !fits {
        return Err(format!(
            "{} does not apply to `{}` ({})",
            conversion.as_str_name(),
            mapped.field,
            match target {
                Target::Timestamp => "a timestamp",
                Target::Decimal => "a decimal's value",
                Target::Plain => "neither a timestamp nor a decimal's value",
            }
        ));
    }
    Ok(())
}

/// What the event field at `path` (snake_case, dot-separated) holds, if it may be mapped.
fn target(path: &str) -> Result<Target, String> {
    let segments: Vec<&str> = path.split('.').collect();
    if SET_BY_INGEST.contains(&path) {
        return Err(format!("`{path}` is set by ingest and cannot be mapped"));
    }
    let mut message = ACTIVITY_EVENT.clone();
    for (depth, segment) in segments.iter().enumerate() {
        let field = message
            .get_field_by_name(segment)
            .ok_or_else(|| format!("`{path}`: {} has no field `{segment}`", message.full_name()))?;
        let last = depth + 1 == segments.len();
        match field.kind() {
            Kind::Message(inner) if inner.full_name() == "google.protobuf.Timestamp" => {
                return if last {
                    Ok(Target::Timestamp)
                } else {
                    Err(format!("`{path}`: a timestamp is mapped as a whole"))
                };
            }
            Kind::Message(inner) if last => {
                return Err(format!(
                    "`{path}` is a {}; map its fields instead",
                    inner.full_name()
                ));
            }
            Kind::Message(inner) => message = inner,
            _ if !last => return Err(format!("`{path}`: `{segment}` has no fields")),
            _ if message.full_name() == "mentorstream.common.v1.Decimal" => {
                return Ok(Target::Decimal);
            }
            _ => return Ok(Target::Plain),
        }
    }
    Err("a field path is needed".to_owned())
}

/// The payload kinds (members of the event's oneof) `rule` maps fields of.
fn payload_kinds(rule: &WebhookRule) -> BTreeSet<&str> {
    rule.fields
        .iter()
        .filter_map(|mapped| mapped.field.split('.').next())
        .filter(|first| {
            ACTIVITY_EVENT
                .get_field_by_name(first)
                .and_then(|field| field.containing_oneof())
                .is_some_and(|oneof| oneof.name() == PAYLOAD_ONEOF)
        })
        .collect()
}

/// The event `mapping` makes of `payload`, or every field that stands in the way, named by
/// its pointer in the payload.
pub fn apply(mapping: &WebhookMapping, payload: &Value) -> Result<Mapped, Vec<Violation>> {
    let rule = select_rule(mapping, payload)?;
    let mut event = Map::new();
    // The payload kind exists even when all its mapped fields are optional and absent.
    for kind in payload_kinds(rule) {
        event.insert(kind.to_owned(), Value::Object(Map::new()));
    }
    let mut origins = Vec::new();
    let mut violations = Vec::new();
    for mapped in &rule.fields {
        let (raw, origin) = match &mapped.value {
            Some(field_mapping::Value::Pointer(pointer)) => {
                (payload.pointer(pointer).cloned(), pointer.clone())
            }
            Some(field_mapping::Value::Constant(constant)) => {
                (Some(Value::String(constant.clone())), String::new())
            }
            None => (None, String::new()),
        };
        let converted = match raw {
            None | Some(Value::Null) if mapped.optional => continue,
            None | Some(Value::Null) => {
                Err(format!("is missing; it is mapped to {}", mapped.field))
            }
            Some(raw) => convert(&raw, mapped.conversion())
                .map_err(|description| format!("{description} (mapped to {})", mapped.field)),
        };
        match converted {
            Ok(value) => {
                insert(&mut event, &mapped.field, value.clone());
                if let Err(error) = read(single(&mapped.field, value)) {
                    violations.push((
                        origin.clone(),
                        format!("{error} (mapped to {})", mapped.field),
                    ));
                }
            }
            Err(description) => violations.push((origin.clone(), description)),
        }
        if !origin.is_empty() {
            origins.push((mapped.field.clone(), origin));
        }
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    let event = read(Value::Object(event)).map_err(|error| vec![("body".to_owned(), error)])?;
    Ok(Mapped { event, origins })
}

fn select_rule<'m>(
    mapping: &'m WebhookMapping,
    payload: &Value,
) -> Result<&'m WebhookRule, Vec<Violation>> {
    if mapping.type_pointer.is_empty() {
        return mapping
            .rules
            .first()
            .ok_or_else(|| vec![("body".to_owned(), "this source maps nothing".to_owned())]);
    }
    let pointer = &mapping.type_pointer;
    let found = payload.pointer(pointer).and_then(|value| text(value).ok());
    let Some(type_value) = found else {
        return Err(vec![(
            pointer.clone(),
            "is missing; it says what the payload is".to_owned(),
        )]);
    };
    mapping
        .rules
        .iter()
        .find(|rule| rule.type_value == type_value)
        .ok_or_else(|| {
            let known: Vec<&str> = mapping
                .rules
                .iter()
                .map(|rule| rule.type_value.as_str())
                .collect();
            vec![(
                pointer.clone(),
                format!(
                    "`{type_value}` is not a payload type this source maps (it maps {})",
                    known.join(", ")
                ),
            )]
        })
}

/// A JSON scalar as text: strings as they are, numbers and booleans as written.
fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Err("is null".to_owned()),
        Value::Array(_) => Err("is an array, not a value".to_owned()),
        Value::Object(_) => Err("is an object, not a value".to_owned()),
    }
}

fn convert(value: &Value, conversion: Conversion) -> Result<Value, String> {
    let text = text(value)?;
    let converted = match conversion {
        Conversion::Unspecified => text,
        Conversion::Hundredths => hundredths(&text)?,
        Conversion::UnixSeconds => {
            let seconds: i64 = text
                .parse()
                .map_err(|_| format!("must be whole seconds since 1970, got `{text}`"))?;
            rfc3339(DateTime::from_timestamp(seconds, 0), &text)?
        }
        Conversion::UnixMillis => {
            let millis: i64 = text
                .parse()
                .map_err(|_| format!("must be whole milliseconds since 1970, got `{text}`"))?;
            rfc3339(DateTime::from_timestamp_millis(millis), &text)?
        }
        Conversion::Rfc3339 => {
            let parsed = DateTime::parse_from_rfc3339(&text).map_err(|_| {
                format!("must be an RFC 3339 time such as 2026-12-01T10:00:00+03:00, got `{text}`")
            })?;
            rfc3339(Some(parsed.with_timezone(&Utc)), &text)?
        }
    };
    Ok(Value::String(converted))
}

/// `4999` → `49.99`: a whole number of hundredths as a decimal.
fn hundredths(text: &str) -> Result<String, String> {
    let count: i128 = text
        .parse()
        .map_err(|_| format!("must be a whole number of hundredths (cents), got `{text}`"))?;
    let sign = if count < 0 { "-" } else { "" };
    let magnitude = count.unsigned_abs();
    Ok(format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100))
}

fn rfc3339(time: Option<DateTime<Utc>>, text: &str) -> Result<String, String> {
    time.map(|time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok_or_else(|| format!("`{text}` is out of the range of timestamps"))
}

/// Sets `value` at the dot-separated `path` of `object`.
fn insert(object: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segments = path.split('.').peekable();
    let mut current = object;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            current.insert(segment.to_owned(), value);
            return;
        }
        let next = current
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(next) = next else { return };
        current = next;
    }
}

/// An event holding only the field at `path`.
fn single(path: &str, value: Value) -> Value {
    let mut object = Map::new();
    insert(&mut object, path, value);
    Value::Object(object)
}

/// The event in proto3 JSON, read with its descriptor.
fn read(json: Value) -> Result<ActivityEvent, String> {
    DynamicMessage::deserialize(ACTIVITY_EVENT.clone(), json)
        .map_err(|error| error.to_string())?
        .transcode_to::<ActivityEvent>()
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests;
