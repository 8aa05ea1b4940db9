-- A person's grants, listed on the connected-apps page with when each was last used (set by
-- token exchanges and refreshes).

ALTER TABLE grants ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX grants_by_subject ON grants(gateway, subject);
