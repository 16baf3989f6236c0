-- Tenant-defined KPI targets: progress toward them is shown in scorecards, and crossing one
-- raises a TargetCrossed signal. Kinds and metrics are stored by name; the KPI service
-- validates them. `kpi_target_requests` remembers each request_id's answer, so a retried
-- PutTarget returns the first result and writes nothing.

CREATE TABLE kpi_targets (
    tenant_id     TEXT NOT NULL REFERENCES tenants (tenant_id),
    target_id     TEXT NOT NULL,
    subject_kind  TEXT NOT NULL,
    metric        TEXT NOT NULL,
    window_kind   TEXT NOT NULL,
    threshold     TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, target_id)
);

CREATE TABLE kpi_target_requests (
    tenant_id     TEXT NOT NULL REFERENCES tenants (tenant_id),
    request_id    TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    subject_kind  TEXT NOT NULL,
    metric        TEXT NOT NULL,
    window_kind   TEXT NOT NULL,
    threshold     TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);
