-- Who holds an unfinished use of an action token: only that attempt may complete or release
-- it, and another takes it over only once it is stale (its process died mid-way).
ALTER TABLE action_token_uses ADD COLUMN attempt TEXT NOT NULL DEFAULT '';
