-- A mentee's answer to a scheduled session ("I'll attend", "please reschedule"), and the
-- action tokens of chat-bot buttons that were used: a token works once.

ALTER TABLE session_mentees ADD COLUMN response TEXT
    CHECK (response IN ('attending', 'reschedule_requested'));
ALTER TABLE session_mentees ADD COLUMN responded_at TIMESTAMPTZ;

CREATE TABLE action_token_uses (
    token_id   TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    action     TEXT NOT NULL,
    -- false while the action is being taken: a retry of the same action may finish it.
    completed  BOOLEAN NOT NULL DEFAULT false,
    used_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
