//! Webhook intake: platforms push their own JSON to `POST /v1/webhooks/{source_id}`, signed
//! per Standard Webhooks ([`signature`]), mapped to activity events by the source's mapping
//! ([`mapping`], [`presets`]) and taken with IngestService's guarantees ([`delivery`]). The
//! sources are managed through WebhookService ([`admin`]).

pub mod admin;
pub mod delivery;
pub mod mapping;
pub mod presets;
pub mod signature;
