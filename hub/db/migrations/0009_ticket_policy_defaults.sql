-- Maintenance tickets: the SLA policy's defaults live in one place, hub/domain/tickets.py
-- (DEFAULT_SLA, DEFAULT_AUTO_CLOSE_AFTER, DEFAULT_AUTO_RAISE). These tables now keep only what an
-- admin changed; hub/db/tickets.py (read_policy) fills in the rest from the domain. So the rows
-- 0008 seeded and nobody changed since (updated_by IS NULL) go, and a default changed in Python
-- reaches every deployment that never chose its own.
DELETE FROM ticket_sla_policy WHERE updated_by IS NULL;

-- NULL: the domain's default auto-raise severities.
ALTER TABLE ticket_settings
    ALTER COLUMN auto_raise_severities DROP DEFAULT,
    ALTER COLUMN auto_raise_severities DROP NOT NULL;
UPDATE ticket_settings SET auto_raise_severities = NULL WHERE updated_by IS NULL;
