-- Partners whose personal data was erased (mentorstream admin erase-partner): the read model
-- never writes their name, locale or time zone again, whatever the activity topic redelivers.
CREATE TABLE erased_partners (
    tenant_id   TEXT NOT NULL,
    partner_id  TEXT NOT NULL,
    erased_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partner_id)
);
