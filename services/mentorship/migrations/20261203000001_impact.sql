-- What mentoring changes (ImpactService): the milestone facts of the partner read model,
-- programmes' milestone targets and roll-out stages with their change log, and the episodes
-- in which a newcomer was at risk.

-- "First" is the earliest occurred_at (kept with LEAST, so order and redelivery do not matter).
ALTER TABLE partners
    ADD COLUMN first_sale_at   TIMESTAMPTZ,
    ADD COLUMN first_module_at TIMESTAMPTZ;

-- When each rank level was first reached.
CREATE TABLE partner_ranks (
    tenant_id   TEXT NOT NULL,
    partner_id  TEXT NOT NULL,
    rank_level  INTEGER NOT NULL,
    reached_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, partner_id, rank_level)
);

-- Days after enrolment by which the programme expects each milestone.
ALTER TABLE programs
    ADD COLUMN first_session_days INTEGER NOT NULL DEFAULT 7 CHECK (first_session_days BETWEEN 1 AND 90),
    ADD COLUMN first_module_days  INTEGER NOT NULL DEFAULT 7 CHECK (first_module_days BETWEEN 1 AND 90),
    ADD COLUMN first_sale_days    INTEGER NOT NULL DEFAULT 14 CHECK (first_sale_days BETWEEN 1 AND 90),
    ADD COLUMN first_recruit_days INTEGER NOT NULL DEFAULT 30 CHECK (first_recruit_days BETWEEN 1 AND 90),
    ADD COLUMN first_rank_days    INTEGER NOT NULL DEFAULT 60 CHECK (first_rank_days BETWEEN 1 AND 90),
    ADD COLUMN first_rank_level   INTEGER NOT NULL DEFAULT 2 CHECK (first_rank_level >= 1);

-- Roll-out stages; the one with the highest number is current. Unset conditions admit all.
CREATE TABLE program_stages (
    tenant_id      TEXT NOT NULL,
    program_id     TEXT NOT NULL,
    number         INTEGER NOT NULL,
    name           TEXT NOT NULL,
    team_root_ids  TEXT[] NOT NULL DEFAULT '{}',
    enrolled_from  DATE,
    enrolled_to    DATE,
    started_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, program_id, number),
    FOREIGN KEY (tenant_id, program_id) REFERENCES programs (tenant_id, program_id)
);

-- Every change to a programme's targets or stages: when, by which API key, the new state.
CREATE TABLE program_changes (
    change_id   BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    program_id  TEXT NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL,
    changed_by  TEXT NOT NULL,
    what        TEXT NOT NULL CHECK (what IN ('targets', 'stage')),
    detail      JSONB NOT NULL,
    FOREIGN KEY (tenant_id, program_id) REFERENCES programs (tenant_id, program_id)
);
CREATE INDEX program_changes_by_program ON program_changes (tenant_id, program_id, change_id);

-- A newcomer's at-risk episodes: open while ended_at is NULL, at most one open per mentee,
-- so that the mentor is told once per episode.
CREATE TABLE at_risk_episodes (
    tenant_id   TEXT NOT NULL,
    episode_id  TEXT NOT NULL,
    mentee_id   TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, episode_id)
);
CREATE UNIQUE INDEX one_open_episode ON at_risk_episodes (tenant_id, mentee_id) WHERE ended_at IS NULL;
