//! WebhookService: a tenant's webhook sources, their mappings and secrets (`admin` scope).

use std::time::Duration;

use mentorstream_grpc::{authorize, field_violation, invalid_argument, refusal, retry_later};
use mentorstream_proto::ingest::v1::webhook_service_server::WebhookService;
use mentorstream_proto::ingest::v1::{
    CreateWebhookSourceRequest, CreateWebhookSourceResponse, DeleteWebhookSourceRequest,
    DeleteWebhookSourceResponse, GetWebhookSourceRequest, GetWebhookSourceResponse,
    ListWebhookSourcesRequest, ListWebhookSourcesResponse, RotateWebhookSecretRequest,
    RotateWebhookSecretResponse, UpdateWebhookMappingRequest, UpdateWebhookMappingResponse,
    WebhookMapping, WebhookPreset, WebhookSecretInfo, WebhookSource, create_webhook_source_request,
    update_webhook_mapping_request,
};
use mentorstream_tenancy::{Scope, TenancyError, Tenants, WebhookSourceRecord};
use prost::Message as _;
use tonic::{Code, Request, Response, Status};

use super::{mapping, presets};

/// How long older secrets verify after a rotation unless the caller says.
const DEFAULT_PREVIOUS_VALID_FOR: Duration = Duration::from_secs(24 * 3600);
const MAX_PREVIOUS_VALID_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone)]
pub struct WebhookAdmin {
    pub tenants: Tenants,
}

/// A source's definition in a request: a preset or a mapping.
enum Definition {
    Preset(i32),
    Mapping(WebhookMapping),
}

#[tonic::async_trait]
impl WebhookService for WebhookAdmin {
    async fn create_webhook_source(
        &self,
        request: Request<CreateWebhookSourceRequest>,
    ) -> Result<Response<CreateWebhookSourceResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        let request = request.into_inner();
        check_name(&request.name)?;
        let mapping = resolve(request.definition.map(|definition| match definition {
            create_webhook_source_request::Definition::Preset(preset) => Definition::Preset(preset),
            create_webhook_source_request::Definition::Mapping(mapping) => {
                Definition::Mapping(mapping)
            }
        }))?;
        let (record, secret) = self
            .tenants
            .create_webhook_source(&tenant_id, &request.name, &mapping.encode_to_vec())
            .await
            .map_err(status)?;
        tracing::info!(
            tenant_id,
            source_id = record.source_id,
            name = record.name,
            "webhook source created"
        );
        Ok(Response::new(CreateWebhookSourceResponse {
            source: Some(source(record)?),
            secret,
        }))
    }

    async fn get_webhook_source(
        &self,
        request: Request<GetWebhookSourceRequest>,
    ) -> Result<Response<GetWebhookSourceResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        let record = self
            .tenants
            .webhook_source(Some(&tenant_id), &request.get_ref().source_id)
            .await
            .map_err(status)?;
        Ok(Response::new(GetWebhookSourceResponse {
            source: Some(source(record)?),
        }))
    }

    async fn list_webhook_sources(
        &self,
        request: Request<ListWebhookSourcesRequest>,
    ) -> Result<Response<ListWebhookSourcesResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        let records = self
            .tenants
            .list_webhook_sources(&tenant_id)
            .await
            .map_err(status)?;
        Ok(Response::new(ListWebhookSourcesResponse {
            sources: records.into_iter().map(source).collect::<Result<_, _>>()?,
        }))
    }

    async fn update_webhook_mapping(
        &self,
        request: Request<UpdateWebhookMappingRequest>,
    ) -> Result<Response<UpdateWebhookMappingResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        let request = request.into_inner();
        let mapping = resolve(request.definition.map(|definition| match definition {
            update_webhook_mapping_request::Definition::Preset(preset) => {
                Definition::Preset(preset)
            }
            update_webhook_mapping_request::Definition::Mapping(mapping) => {
                Definition::Mapping(mapping)
            }
        }))?;
        let record = self
            .tenants
            .update_webhook_mapping(&tenant_id, &request.source_id, &mapping.encode_to_vec())
            .await
            .map_err(status)?;
        Ok(Response::new(UpdateWebhookMappingResponse {
            source: Some(source(record)?),
        }))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        let request = request.into_inner();
        let previous_valid_for = previous_valid_for(request.previous_valid_for)?;
        let (record, secret) = self
            .tenants
            .rotate_webhook_secret(&tenant_id, &request.source_id, previous_valid_for)
            .await
            .map_err(status)?;
        tracing::info!(
            tenant_id,
            source_id = record.source_id,
            ?previous_valid_for,
            "webhook secret rotated"
        );
        Ok(Response::new(RotateWebhookSecretResponse {
            source: Some(source(record)?),
            secret,
        }))
    }

    async fn delete_webhook_source(
        &self,
        request: Request<DeleteWebhookSourceRequest>,
    ) -> Result<Response<DeleteWebhookSourceResponse>, Status> {
        let tenant_id = authorize(&request, Scope::Admin)?.tenant_id;
        self.tenants
            .delete_webhook_source(&tenant_id, &request.get_ref().source_id)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteWebhookSourceResponse {}))
    }
}

fn check_name(name: &str) -> Result<(), Status> {
    let valid = (1..=MAX_NAME_CHARS).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(field_violation(
            "name",
            format!(
                "must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, `.`, `_`, `-`, got `{name}`"
            ),
        ))
    }
}

/// The mapping a request defines, checked.
fn resolve(definition: Option<Definition>) -> Result<WebhookMapping, Status> {
    let mapping = match definition {
        None => {
            return Err(field_violation(
                "definition",
                "give a preset (WEBHOOK_PRESET_TYPED_ENVELOPE, WEBHOOK_PRESET_FLAT_CENTS) or a mapping",
            ));
        }
        Some(Definition::Preset(preset)) => WebhookPreset::try_from(preset)
            .ok()
            .and_then(presets::mapping)
            .ok_or_else(|| {
                field_violation(
                    "preset",
                    format!(
                        "{preset} is not a preset: WEBHOOK_PRESET_TYPED_ENVELOPE or \
                         WEBHOOK_PRESET_FLAT_CENTS"
                    ),
                )
            })?,
        Some(Definition::Mapping(mapping)) => mapping,
    };
    let violations = mapping::check(&mapping, "mapping");
    if violations.is_empty() {
        Ok(mapping)
    } else {
        Err(invalid_argument(
            format!("the mapping cannot make events: {}", violations[0].1),
            violations,
        ))
    }
}

fn previous_valid_for(given: Option<prost_types::Duration>) -> Result<Duration, Status> {
    let Some(given) = given else {
        return Ok(DEFAULT_PREVIOUS_VALID_FOR);
    };
    u64::try_from(given.seconds)
        .ok()
        .filter(|_| given.nanos == 0)
        .map(Duration::from_secs)
        .filter(|duration| *duration <= MAX_PREVIOUS_VALID_FOR)
        .ok_or_else(|| {
            field_violation(
                "previous_valid_for",
                format!(
                    "must be whole seconds from 0 to 604800 (7 days), got {}s {}ns",
                    given.seconds, given.nanos
                ),
            )
        })
}

fn source(record: WebhookSourceRecord) -> Result<WebhookSource, Status> {
    let timestamp = |time: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    };
    let mapping = WebhookMapping::decode(record.mapping.as_slice()).map_err(|error| {
        tracing::error!(source_id = record.source_id, %error, "a stored webhook mapping does not decode");
        Status::internal("internal error; see the service log")
    })?;
    Ok(WebhookSource {
        source_id: record.source_id,
        name: record.name,
        mapping: Some(mapping),
        secrets: record
            .secrets
            .into_iter()
            .map(|secret| WebhookSecretInfo {
                secret_id: secret.secret_id,
                created_at: Some(timestamp(secret.created_at)),
                expires_at: secret.expires_at.map(timestamp),
            })
            .collect(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    })
}

/// The answer for a control-database error.
pub fn status(error: TenancyError) -> Status {
    match error {
        TenancyError::DuplicateWebhookSource(_) => refusal(
            Code::AlreadyExists,
            "WEBHOOK_SOURCE_EXISTS",
            [],
            error.to_string(),
        ),
        TenancyError::UnknownWebhookSource(_) => refusal(
            Code::NotFound,
            "WEBHOOK_SOURCE_NOT_FOUND",
            [],
            error.to_string(),
        ),
        error if error.is_transient() => {
            tracing::warn!(%error, "control database");
            retry_later(
                "cannot reach the control database right now; retry",
                "CONTROL_DATABASE_UNAVAILABLE",
                mentorstream_grpc::RETRY_AFTER,
                [],
            )
        }
        error => {
            tracing::error!(%error, "control database");
            Status::internal("internal error; see the service log")
        }
    }
}
