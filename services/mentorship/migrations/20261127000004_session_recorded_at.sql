-- When the service learned of a session. A session is missed when it is not completed within
-- the grace after its end — counted from when it was recorded if that was later, so that a
-- company importing its history (sessions that ended long ago) can complete them after
-- scheduling them.

ALTER TABLE sessions ADD COLUMN recorded_at TIMESTAMPTZ NOT NULL DEFAULT now();
