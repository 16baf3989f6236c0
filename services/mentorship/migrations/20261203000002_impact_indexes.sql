-- What the first-90-days round and ImpactService's cohorts look up per mentee and per mentor.
CREATE INDEX session_mentees_by_mentee ON session_mentees (tenant_id, mentee_id) WHERE attended;
CREATE INDEX feedback_by_mentee ON feedback (tenant_id, mentee_id);
CREATE INDEX feedback_by_mentor ON feedback (tenant_id, mentor_id);
