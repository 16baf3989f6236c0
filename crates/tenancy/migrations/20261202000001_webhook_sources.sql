-- Webhook sources: a platform pushing its own JSON to POST /v1/webhooks/{source_id}, signed
-- per Standard Webhooks. The mapping is a mentorstream.ingest.v1.WebhookMapping, encoded.
-- A source has one current secret (expires_at NULL) and, after a rotation, older ones that
-- verify until they expire.

CREATE TABLE webhook_sources (
    source_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (tenant_id),
    name       TEXT NOT NULL,
    mapping    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE webhook_secrets (
    source_id  TEXT NOT NULL REFERENCES webhook_sources (source_id) ON DELETE CASCADE,
    secret_id  TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (source_id, secret_id)
);
