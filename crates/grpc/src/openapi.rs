//! The OpenAPI 3 document of the HTTP/JSON API, generated from the same descriptors the API
//! transcodes with: one path per unary method, one schema per message and enum it uses, in
//! the proto3 JSON mapping (64-bit integers as strings, enums by name, well-known types as
//! their JSON forms), and `google.rpc.Status` for every refusal.

use std::collections::BTreeMap;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use crate::json::JsonApi;

/// The document for `api`, titled `title`.
pub fn document(api: &JsonApi, title: &str) -> Value {
    let mut schemas = BTreeMap::new();
    let mut paths = serde_json::Map::new();
    for (path, method) in api.methods() {
        let (input, output) = (method.input(), method.output());
        collect(&input, &mut schemas);
        collect(&output, &mut schemas);
        let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        // A public method (a chat-bot button's token is its credential) needs no key.
        let security = if crate::auth::is_public(&grpc_path) {
            json!([])
        } else {
            json!([{"apiKey": []}])
        };
        paths.insert(
            path.to_owned(),
            json!({
                "post": {
                    "security": security,
                    "operationId": format!("{}.{}", method.parent_service().name(), method.name()),
                    "summary": comment(&method.parent_file(), method.path()),
                    "tags": [method.parent_service().name()],
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": reference(&input)}},
                    },
                    "parameters": [{
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": false,
                        "schema": {"type": "string"},
                        "description": "Fills an empty request_id: a retry answers as the first call.",
                    }],
                    "responses": {
                        "200": if method.is_server_streaming() {
                            json!({
                                "description": "Server-sent events: `message` events whose data is one answer each, an `error` event with a google.rpc.Status if the stream is refused.",
                                "content": {"text/event-stream": {"schema": reference(&output)}},
                            })
                        } else {
                            json!({"description": "OK", "content": {"application/json": {"schema": reference(&output)}}})
                        },
                        "default": {
                            "description": "A refusal: its HTTP status and a google.rpc.Status.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
                        },
                    },
                }
            }),
        );
    }
    schemas.insert(
        "google.rpc.Status".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "The gRPC code."},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {
                    "type": "object",
                    "description": "google.rpc.BadRequest, ErrorInfo, RetryInfo…, with `@type`.",
                    "properties": {"@type": {"type": "string"}},
                    "additionalProperties": true,
                }},
            },
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": "v1"},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    })
}

fn reference(message: &MessageDescriptor) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", message.full_name())})
}

/// Adds the schema of `message` and of every message and enum it reaches.
fn collect(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) {
    if schemas.contains_key(message.full_name()) || well_known(message).is_some() {
        return;
    }
    // Placeholder first: recursive messages stop here.
    schemas.insert(message.full_name().to_owned(), Value::Null);
    let mut properties = serde_json::Map::new();
    for field in message.fields() {
        properties.insert(field.json_name().to_owned(), field_schema(&field, schemas));
    }
    schemas.insert(
        message.full_name().to_owned(),
        json!({
            "type": "object",
            "description": comment(&message.parent_file(), message.path()),
            "properties": properties,
        }),
    );
}

fn field_schema(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return json!({"type": "object"});
        };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": kind_schema(&value.kind(), schemas)});
    }
    let single = kind_schema(&field.kind(), schemas);
    if field.cardinality() == Cardinality::Repeated {
        json!({"type": "array", "items": single})
    } else {
        single
    }
}

fn kind_schema(kind: &Kind, schemas: &mut BTreeMap<String, Value>) -> Value {
    match kind {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(descriptor) => json!({
            "type": "string",
            "enum": descriptor.values().map(|value| value.name().to_owned()).collect::<Vec<_>>(),
        }),
        Kind::Message(message) => {
            if let Some(schema) = well_known(message) {
                return schema;
            }
            collect(message, schemas);
            reference(message)
        }
    }
}

/// The JSON form of a well-known type.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.FieldMask" => json!({"type": "string", "example": "email,locale"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Any" => json!({"type": "object", "additionalProperties": true}),
        _ => return None,
    })
}

/// The leading comment of the element at `path` in its file, if any.
fn comment(file: &prost_reflect::FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|location| location.path == path))
        .and_then(|location| location.leading_comments.clone())
        .map(|comment| comment.trim().to_owned())
        .unwrap_or_default()
}
