-- A key of each partner's own, which seals the personal fields of their enrolments on the
-- activity topic (PartnerEnrolled.sealed_personal). Erasing the partner destroys the key and
-- leaves the row as a marker (data_key NULL): ingest then keeps no personal field of theirs.
CREATE TABLE partner_data_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
    partner_id TEXT NOT NULL,
    data_key BYTEA CHECK (data_key IS NULL OR length(data_key) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at TIMESTAMPTZ,
    CHECK ((data_key IS NULL) = (erased_at IS NOT NULL)),
    PRIMARY KEY (tenant_id, partner_id)
);
