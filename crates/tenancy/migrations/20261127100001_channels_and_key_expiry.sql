-- Where a tenant's notifications go: its chat-bot gateway (already in `tenants`), an SMTP
-- server given as one URL (lettre's form: smtp://, smtps://, credentials and `?tls=`), the
-- sender address, and the default daily cap of notifications per partner.
-- Keys may expire: the notifier issues itself short-lived read keys to ask KpiService.

ALTER TABLE tenants ADD COLUMN smtp_url TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN email_from TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN daily_cap INTEGER NOT NULL DEFAULT 10 CHECK (daily_cap > 0);

ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
