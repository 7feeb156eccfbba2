-- Security actions (people, accounts, MFA, logins, devices, rules, webhooks,
-- ticket policy) join the one hash-chained audit log beside attendance
-- changes (hub/db/security_audit.py). `action` says what was done to the
-- entity (`registered`, `role_changed`, `login_failed`, ...); attendance
-- entries leave it NULL.
ALTER TABLE audit_log ADD COLUMN action text;

-- Partial: attendance entries (NULL action, one per check-in) pay no index cost on insert.
CREATE INDEX audit_log_entity_action ON audit_log (entity, action, id) WHERE action IS NOT NULL;

-- The hash covers `action` too, but only when it is set: the canonical text of
-- every entry written before this migration (and of every attendance entry)
-- is unchanged, so the chain keeps verifying across the upgrade, and
-- clearing or changing an entry's action shows as `altered`.
CREATE OR REPLACE FUNCTION audit_entry_canonical(e audit_log) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT (jsonb_build_object(
        'id', e.id,
        'at', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'actor', e.actor,
        'entity', e.entity,
        'entity_id', e.entity_id,
        'session_id', e.session_id,
        'student_id', e.student_id,
        'course_id', e.course_id,
        'before', e.before,
        'after', e.after,
        'reason', e.reason
    ) || CASE WHEN e.action IS NULL THEN '{}'::jsonb
              ELSE jsonb_build_object('action', e.action) END)::text
$$;
