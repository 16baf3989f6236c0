-- The mentorship service's state. Every table is tenant-scoped; every query filters by tenant.

-- The partner read model, from the activity stream: the earliest enrolment gives the sponsor,
-- the highest rank level reached is the current rank.
CREATE TABLE partners (
    tenant_id        TEXT NOT NULL,
    partner_id       TEXT NOT NULL,
    sponsor_id       TEXT NOT NULL DEFAULT '',
    display_name     TEXT NOT NULL DEFAULT '',
    locale           TEXT NOT NULL DEFAULT '',
    time_zone        TEXT NOT NULL DEFAULT '',
    enrolled_at      TIMESTAMPTZ NOT NULL,
    -- Orders enrolments: (occurred_at, source, source_event_id) of the one that counts.
    enrolment_rank   TEXT NOT NULL,
    rank_level       INTEGER NOT NULL DEFAULT 0,
    rank_name        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, partner_id)
);
CREATE INDEX partners_by_sponsor ON partners (tenant_id, sponsor_id);

CREATE TABLE programs (
    tenant_id                    TEXT NOT NULL,
    program_id                   TEXT NOT NULL,
    name                         TEXT NOT NULL,
    kind                         TEXT NOT NULL CHECK (kind IN ('pilot', 'standard')),
    sessions_per_week            INTEGER NOT NULL CHECK (sessions_per_week BETWEEN 1 AND 14),
    default_session_minutes      INTEGER NOT NULL CHECK (default_session_minutes BETWEEN 5 AND 60),
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, program_id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE groups (
    tenant_id    TEXT NOT NULL,
    group_id     TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    mentor_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    capacity     INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 100),
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, group_id),
    FOREIGN KEY (tenant_id, program_id) REFERENCES programs (tenant_id, program_id)
);
CREATE INDEX groups_by_mentor ON groups (tenant_id, mentor_id);

-- Who mentored whom, when: ended_at is NULL while active. At most one active assignment per
-- mentee (one active mentor).
CREATE TABLE assignments (
    tenant_id    TEXT NOT NULL,
    assignment_id BIGSERIAL PRIMARY KEY,
    group_id     TEXT NOT NULL,
    mentee_id    TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, group_id),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX one_active_mentor ON assignments (tenant_id, mentee_id) WHERE ended_at IS NULL;
CREATE INDEX assignments_by_group ON assignments (tenant_id, group_id) WHERE ended_at IS NULL;

-- A retried mutation (same request_id) gets the first answer and writes nothing.
CREATE TABLE requests (
    tenant_id    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    method       TEXT NOT NULL,
    -- The encoded protobuf response.
    response     BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);

-- The transactional outbox: written in the transaction of the change it announces, published
-- by the relay in sequence order per key, marked sent after Kafka acknowledged it.
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    event_id     TEXT NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at      TIMESTAMPTZ
);
CREATE INDEX outbox_unsent ON outbox (record_key, seq) WHERE sent_at IS NULL;
