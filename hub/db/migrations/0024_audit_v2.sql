-- Audit chain, second format: personal data outside the hash, redaction, archived segments.
--
-- 1. New entries hash a COMMITMENT to their personal payload instead of the payload:
--      personal_text       = audit_personal_canonical(entry): the jsonb text of
--                            {actor, entity_id, student_id, before, after, reason}
--      personal_commitment = sha256(personal_salt || utf8(personal_text)), personal_salt 32 random bytes
--      hash                = sha256(prev_hash || utf8(audit_entry_canonical(entry))), where the
--                            canonical text of a v2 entry is the jsonb text of
--                            {id, at, entity, action, session_id, course_id, personal: hex(commitment)}
--    So the personal payload can be pseudonymised (redaction: hub.db.audit.redact_subject) and its
--    salt deleted while the chain, which holds only the commitment, still verifies. Entries written
--    before this migration (personal_commitment NULL) keep their format and their hashes.
-- 2. Redaction is the one UPDATE the log accepts: only the personal columns, only under the
--    transaction-local switch campushub.audit_change = 'redact', and it must mark the entry
--    (redacted_at set, salt gone). Everything else is still refused.
-- 3. Archiving: the oldest entries are written to segment files (hub/db/audit_archive.py) and then
--    deleted; each segment leaves an anchor row in audit_archive (its id range, the prev_hash of its
--    first entry, the hash of its last, the file's sha256). A DELETE is accepted only under the
--    switch campushub.audit_change = 'prune' and only for entries inside an anchored segment; the
--    chain in the database then starts from the newest anchor's last_hash.
-- hub/db/audit_hash.py is the same definition in Python (tests/db/test_audit_hash.py).

ALTER TABLE audit_log ADD COLUMN personal_salt       bytea;
ALTER TABLE audit_log ADD COLUMN personal_commitment bytea;
ALTER TABLE audit_log ADD COLUMN redacted_at         timestamptz;

CREATE TABLE audit_archive (
    segment_id      bigserial PRIMARY KEY,
    first_id        bigint NOT NULL UNIQUE,
    last_id         bigint NOT NULL,
    entries         integer NOT NULL CHECK (entries > 0),
    first_prev_hash bytea NOT NULL,
    last_hash       bytea NOT NULL,
    oldest_at       timestamptz NOT NULL,
    newest_at       timestamptz NOT NULL,
    file_name       text NOT NULL,
    file_sha256     bytea NOT NULL,
    file_bytes      bigint NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (first_id <= last_id)
);

-- The personal payload's canonical text (what the commitment covers).
CREATE FUNCTION audit_personal_canonical(e audit_log) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'actor', e.actor,
        'entity_id', e.entity_id,
        'student_id', e.student_id,
        'before', e.before,
        'after', e.after,
        'reason', e.reason
    )::text
$$;

-- v1 (no commitment): exactly the text of migrations 0004/0013. v2: the chain fields and the commitment.
CREATE OR REPLACE FUNCTION audit_entry_canonical(e audit_log) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN e.personal_commitment IS NULL THEN
        (jsonb_build_object(
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
    ELSE
        jsonb_build_object(
            'id', e.id,
            'at', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'entity', e.entity,
            'action', e.action,
            'session_id', e.session_id,
            'course_id', e.course_id,
            'personal', encode(e.personal_commitment, 'hex')
        )::text
    END
$$;

-- Every append is a v2 entry. The previous hash is the newest entry's, else (everything archived)
-- the newest anchor's, else 32 zero bytes. Same lock and isolation rule as migration 0004.
CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_log appends need READ COMMITTED isolation (got %)',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(4702111234474983745);
    NEW.id := nextval('audit_log_id_seq');
    NEW.at := coalesce(NEW.at, now());
    NEW.reason := coalesce(NEW.reason, '');
    NEW.prev_hash := coalesce(
        (SELECT a.hash FROM audit_log a ORDER BY a.id DESC LIMIT 1),
        (SELECT s.last_hash FROM audit_archive s ORDER BY s.last_id DESC LIMIT 1),
        '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    -- 32 bytes from two v4 UUIDs (pg_strong_random underneath: 244 random bits).
    NEW.personal_salt := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'));
    NEW.personal_commitment := sha256(NEW.personal_salt || convert_to(audit_personal_canonical(NEW), 'UTF8'));
    NEW.redacted_at := NULL;
    NEW.hash := sha256(NEW.prev_hash || convert_to(audit_entry_canonical(NEW), 'UTF8'));
    RETURN NEW;
END $$;

-- Still append-only, with the two narrow exceptions above (both need a switch set with
-- set_config(..., true), which lasts until the end of the transaction, by hub/db code only).
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    change text := coalesce(current_setting('campushub.audit_change', true), '');
BEGIN
    -- Nested IFs: OLD and NEW are NULL in the statement-level TRUNCATE trigger.
    IF TG_OP = 'UPDATE' AND change = 'redact' THEN
        IF OLD.redacted_at IS NULL AND NEW.redacted_at IS NOT NULL AND NEW.personal_salt IS NULL
           AND (NEW.id, NEW.at, NEW.entity, NEW.action, NEW.session_id, NEW.course_id,
                NEW.prev_hash, NEW.hash, NEW.personal_commitment)
               IS NOT DISTINCT FROM
               (OLD.id, OLD.at, OLD.entity, OLD.action, OLD.session_id, OLD.course_id,
                OLD.prev_hash, OLD.hash, OLD.personal_commitment) THEN
            RETURN NEW;
        END IF;
    ELSIF TG_OP = 'DELETE' AND change = 'prune' THEN
        IF EXISTS (SELECT 1 FROM audit_archive s WHERE OLD.id BETWEEN s.first_id AND s.last_id) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- The anchors are append-only too.
CREATE FUNCTION audit_archive_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_archive is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_archive_append_only BEFORE UPDATE OR DELETE ON audit_archive
    FOR EACH ROW EXECUTE FUNCTION audit_archive_refuse_change();
CREATE TRIGGER audit_archive_no_truncate BEFORE TRUNCATE ON audit_archive
    FOR EACH STATEMENT EXECUTE FUNCTION audit_archive_refuse_change();
