-- Tenants (MLM companies) and their API keys. Keys are stored only as SHA-256 hashes of their
-- secret part: they are 256-bit random values, so a fast hash is as safe as a slow one.

CREATE TABLE tenants (
    tenant_id              TEXT PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE,
    time_zone              TEXT NOT NULL,
    default_locale         TEXT NOT NULL DEFAULT 'en',
    allowed_lateness_secs  BIGINT NOT NULL DEFAULT 3024000 CHECK (allowed_lateness_secs > 0),
    inactivity_days        INTEGER NOT NULL DEFAULT 7 CHECK (inactivity_days > 0),
    chatbot_url            TEXT NOT NULL DEFAULT '',
    chatbot_secret         TEXT NOT NULL DEFAULT '',
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (tenant_id),
    secret_hash  BYTEA NOT NULL,
    scopes       TEXT[] NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);
