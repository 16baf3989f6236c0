-- The notifier's state: partners' preferences, what it knows of mentors and mentees, every
-- notification (one per recipient and cause) with its delivery attempts, and the answers of
-- mutations by request_id.

CREATE TABLE preferences (
    tenant_id         TEXT NOT NULL,
    partner_id        TEXT NOT NULL,
    -- Channel names in order of preference; empty: every channel with an address.
    channels          TEXT[] NOT NULL DEFAULT '{}',
    chatbot_user_id   TEXT NOT NULL DEFAULT '',
    email             TEXT NOT NULL DEFAULT '',
    locale            TEXT NOT NULL DEFAULT '',
    time_zone         TEXT NOT NULL DEFAULT '',
    -- Minutes after local midnight; both NULL: no quiet hours.
    quiet_start       INTEGER CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end         INTEGER CHECK (quiet_end BETWEEN 0 AND 1439),
    opted_out         TEXT[] NOT NULL DEFAULT '{}',
    -- 0: the tenant's default.
    daily_cap         INTEGER NOT NULL DEFAULT 0 CHECK (daily_cap >= 0),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partner_id)
);

-- Each mentee's current mentor, from MenteeAssigned/MenteeUnassigned (keyed by the mentee, so
-- they arrive in order).
CREATE TABLE mentees (
    tenant_id    TEXT NOT NULL,
    mentee_id    TEXT NOT NULL,
    mentor_id    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, mentee_id)
);

-- Every group, its mentor and since when: each mentor gets a weekly digest per group.
CREATE TABLE groups (
    tenant_id    TEXT NOT NULL,
    group_id     TEXT NOT NULL,
    mentor_id    TEXT NOT NULL,
    since        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, group_id)
);

-- What session reminders say that a reschedule does not repeat.
CREATE TABLE sessions (
    tenant_id    TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    topic        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, session_id)
);

CREATE TABLE notifications (
    notification_id  TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    recipient_id     TEXT NOT NULL,
    category         TEXT NOT NULL,
    -- The template.
    kind             TEXT NOT NULL,
    cause            TEXT NOT NULL,
    -- Notifications a later event may cancel together, e.g. one session's reminders.
    cause_group      TEXT NOT NULL DEFAULT '',
    -- The template's values.
    params           JSONB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed', 'cancelled')),
    due_at           TIMESTAMPTZ NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    -- Set while an instance sends it; another instance takes it over only after this.
    lease_until      TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Attempts made before the last RetryNotification: a retry starts a fresh attempt budget.
    attempts_before_retry INTEGER NOT NULL DEFAULT 0,
    -- Fixed at the first attempt, so every retry sends the same message.
    channel          TEXT,
    address          TEXT,
    locale           TEXT,
    subject          TEXT,
    body             TEXT,
    delivered_at     TIMESTAMPTZ,
    status_reason    TEXT NOT NULL DEFAULT '',
    -- The W3C trace context of the event that caused it: its delivery continues that trace.
    traceparent      TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, recipient_id, cause)
);

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_by_recipient
    ON notifications (tenant_id, recipient_id, created_at, notification_id);
CREATE INDEX notifications_by_cause_group ON notifications (tenant_id, cause_group)
    WHERE cause_group <> '';
CREATE INDEX notifications_delivered
    ON notifications (tenant_id, recipient_id, delivered_at) WHERE status = 'delivered';

CREATE TABLE attempts (
    notification_id  TEXT NOT NULL REFERENCES notifications (notification_id),
    attempt          INTEGER NOT NULL,
    at               TIMESTAMPTZ NOT NULL,
    channel          TEXT NOT NULL,
    -- HTTP status or SMTP reply code; 0 when no answer came.
    response_code    INTEGER NOT NULL,
    error            TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (notification_id, attempt)
);

CREATE TABLE requests (
    tenant_id    TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    method       TEXT NOT NULL,
    response     BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);
