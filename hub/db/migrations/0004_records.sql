-- Records: the hash-chained, append-only audit log; leave
-- applications with their documents; correction requests.

-- ---------------------------------------------------------------- audit log

-- Attendance entries carry the record's session, student and course so the
-- log can be searched without parsing entity_id. prev_hash/hash form the
-- chain: hash = sha256(prev_hash || convert_to(audit_entry_canonical(entry), 'UTF8')),
-- and the first entry's prev_hash is 32 zero bytes.
ALTER TABLE audit_log ADD COLUMN session_id text;
ALTER TABLE audit_log ADD COLUMN student_id text;
ALTER TABLE audit_log ADD COLUMN course_id  text;
ALTER TABLE audit_log ADD COLUMN prev_hash  bytea;
ALTER TABLE audit_log ADD COLUMN hash       bytea;

CREATE INDEX audit_log_student ON audit_log (student_id, id) WHERE student_id IS NOT NULL;
CREATE INDEX audit_log_session ON audit_log (session_id, id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_log_course  ON audit_log (course_id, id) WHERE course_id IS NOT NULL;
CREATE INDEX audit_log_actor   ON audit_log (actor, id);
CREATE INDEX audit_log_at      ON audit_log (at);

-- The canonical text of an entry that its hash covers: a jsonb object (jsonb
-- prints keys in one fixed order with fixed spacing), the time always in UTC
-- with microseconds so the session's TimeZone cannot change it.
CREATE FUNCTION audit_entry_canonical(e audit_log) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
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
    )::text
$$;

-- Backfill the chain over entries written before this migration.
DO $$
DECLARE
    entry audit_log;
    last  bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
BEGIN
    FOR entry IN SELECT * FROM audit_log ORDER BY id LOOP
        UPDATE audit_log
           SET prev_hash = last,
               hash = sha256(last || convert_to(audit_entry_canonical(entry), 'UTF8'))
         WHERE id = entry.id
        RETURNING hash INTO last;
    END LOOP;
END $$;

-- Entries are numbered by the chain trigger, under the chain lock, so id order
-- is chain order even when transactions interleave (a default would hand out
-- ids before the lock is taken).
ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT;

-- Every append, whoever makes it, joins the one chain: take the chain's
-- transaction-scoped advisory lock (the key is hub.db.attendance.AUDIT_CHAIN_LOCK),
-- read the newest entry, number and hash the new one. Needs READ COMMITTED:
-- each statement of this volatile function then sees entries committed by the
-- previous lock holder (and earlier rows of the same INSERT).
CREATE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last bytea;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_log appends need READ COMMITTED isolation (got %)',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(4702111234474983745);
    SELECT a.hash INTO last FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    NEW.id := nextval('audit_log_id_seq');
    NEW.at := coalesce(NEW.at, now());
    NEW.reason := coalesce(NEW.reason, '');
    NEW.prev_hash := coalesce(last, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.hash := sha256(NEW.prev_hash || convert_to(audit_entry_canonical(NEW), 'UTF8'));
    RETURN NEW;
END $$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- ---------------------------------------------------------------- leave

CREATE TABLE leave_applications (
    id            bigserial PRIMARY KEY,
    student_id    text NOT NULL REFERENCES students (id),
    starts_on     date NOT NULL,
    ends_on       date NOT NULL,
    reason        text NOT NULL,
    status        text NOT NULL DEFAULT 'applied'
                  CHECK (status IN ('applied', 'approved', 'rejected', 'cancelled')),
    applied_at    timestamptz NOT NULL DEFAULT now(),
    decided_by    text REFERENCES users (id),
    decided_at    timestamptz,
    decision_note text NOT NULL DEFAULT '',
    cancelled_by  text REFERENCES users (id),
    cancelled_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);
CREATE INDEX leave_applications_student ON leave_applications (student_id, starts_on);
CREATE INDEX leave_applications_pending ON leave_applications (applied_at) WHERE status = 'applied';

-- At most one document per application, kept apart so listings never read the bytes.
CREATE TABLE leave_documents (
    leave_id     bigint PRIMARY KEY REFERENCES leave_applications (id),
    filename     text NOT NULL,
    content_type text NOT NULL CHECK (content_type IN ('application/pdf', 'image/jpeg', 'image/png')),
    size_bytes   integer NOT NULL CHECK (size_bytes > 0 AND size_bytes <= 5242880),
    sha256       bytea NOT NULL,
    data         bytea NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (octet_length(data) = size_bytes)
);

-- The records an approved leave changed, with what each held before, so
-- cancelling restores exactly that (prior_status NULL: there was no record).
CREATE TABLE leave_sessions (
    leave_id            bigint NOT NULL REFERENCES leave_applications (id),
    session_id          text NOT NULL REFERENCES class_sessions (id),
    student_id          text NOT NULL REFERENCES students (id),
    prior_status        text,
    prior_checked_in_at timestamptz,
    prior_source        text,
    reverted_at         timestamptz,
    PRIMARY KEY (leave_id, session_id)
);
CREATE INDEX leave_sessions_session ON leave_sessions (session_id, student_id);

-- ---------------------------------------------------------------- corrections

CREATE TABLE correction_requests (
    id               bigserial PRIMARY KEY,
    session_id       text NOT NULL REFERENCES class_sessions (id),
    student_id       text NOT NULL REFERENCES students (id),
    current_status   text,
    requested_status text NOT NULL CHECK (requested_status IN ('present', 'late', 'absent', 'excused')),
    reason           text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn')),
    requested_at     timestamptz NOT NULL DEFAULT now(),
    decided_by       text REFERENCES users (id),
    decided_at       timestamptz,
    decision_note    text NOT NULL DEFAULT '',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- One open request per record at a time.
CREATE UNIQUE INDEX correction_requests_one_pending
    ON correction_requests (session_id, student_id) WHERE status = 'pending';
CREATE INDEX correction_requests_student ON correction_requests (student_id, requested_at);
CREATE INDEX correction_requests_pending ON correction_requests (requested_at) WHERE status = 'pending';
