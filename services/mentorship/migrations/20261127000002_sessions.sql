-- Training modules, micro-sessions with their expected mentees and attendance, and feedback.

CREATE TABLE modules (
    tenant_id    TEXT NOT NULL,
    module_id    TEXT NOT NULL,
    title        TEXT NOT NULL,
    minutes      INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 1440),
    skill_tags   TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, module_id)
);

CREATE TABLE sessions (
    tenant_id      TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    group_id       TEXT NOT NULL,
    mentor_id      TEXT NOT NULL,
    starts_at      TIMESTAMPTZ NOT NULL,
    ends_at        TIMESTAMPTZ NOT NULL,
    topic          TEXT NOT NULL DEFAULT '',
    module_id      TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('scheduled', 'completed', 'cancelled', 'missed')),
    notes          TEXT NOT NULL DEFAULT '',
    cancel_reason  TEXT NOT NULL DEFAULT '',
    completed_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, session_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, group_id),
    CHECK (ends_at > starts_at)
);
CREATE INDEX sessions_by_mentor ON sessions (tenant_id, mentor_id, starts_at);
CREATE INDEX sessions_due ON sessions (ends_at) WHERE state = 'scheduled';

CREATE TABLE session_mentees (
    tenant_id    TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    mentee_id    TEXT NOT NULL,
    attended     BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, session_id, mentee_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, session_id)
);

CREATE TABLE feedback (
    tenant_id     TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    mentee_id     TEXT NOT NULL,
    mentor_id     TEXT NOT NULL,
    rating        INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment       TEXT NOT NULL DEFAULT '',
    submitted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, session_id, mentee_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, session_id)
);
