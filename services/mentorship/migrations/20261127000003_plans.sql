-- Development plans (one per mentee) and their goals: KPI targets whose status follows the
-- aggregator's goal signals.

CREATE TABLE plans (
    tenant_id   TEXT NOT NULL,
    plan_id     TEXT NOT NULL,
    mentee_id   TEXT NOT NULL,
    mentor_id   TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plan_id),
    UNIQUE (tenant_id, mentee_id)
);

CREATE TABLE goals (
    tenant_id    TEXT NOT NULL,
    goal_id      TEXT NOT NULL,
    plan_id      TEXT NOT NULL,
    metric       INTEGER NOT NULL,
    target       TEXT NOT NULL,
    starts_at    TIMESTAMPTZ NOT NULL,
    due_at       TIMESTAMPTZ NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'in_progress'
                 CHECK (status IN ('in_progress', 'achieved', 'missed')),
    -- The latest value the aggregator reported with a goal signal.
    progress     TEXT,
    PRIMARY KEY (tenant_id, goal_id),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES plans (tenant_id, plan_id),
    CHECK (due_at > starts_at)
);
CREATE INDEX goals_by_plan ON goals (tenant_id, plan_id);
