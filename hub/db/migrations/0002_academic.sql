-- Academic model: terms, holidays, sections, faculty assignments,
-- weekly timetable slots, per-course check-in rules, and the columns sessions
-- need to be generated from a timetable and managed by faculty.

-- A teaching term. Its timezone turns weekly wall-clock slots into instants
-- (DST-safe, via zoneinfo in hub.domain.timetable).
CREATE TABLE terms (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    starts_on  date NOT NULL,
    ends_on    date NOT NULL,
    timezone   text NOT NULL DEFAULT 'UTC',
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);

-- Campus-wide days without classes (a single day or a break spanning days).
CREATE TABLE holidays (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    starts_on  date NOT NULL,
    ends_on    date NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on)
);
CREATE INDEX holidays_dates ON holidays (starts_on, ends_on);

-- One offering of a course in a term (e.g. CS101 section A, Autumn 2025).
CREATE TABLE sections (
    id         text PRIMARY KEY,
    course_id  text NOT NULL REFERENCES courses (id),
    term_id    text NOT NULL REFERENCES terms (id),
    name       text NOT NULL,
    capacity   integer CHECK (capacity > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (course_id, term_id, name)
);
CREATE INDEX sections_term ON sections (term_id);

-- Who teaches what. courses.faculty_id stays the course coordinator; any
-- faculty with a row here (course-wide when section_id is NULL, or for one
-- section) may manage the course's sessions.
CREATE TABLE faculty_assignments (
    id          bigserial PRIMARY KEY,
    course_id   text NOT NULL REFERENCES courses (id),
    faculty_id  text NOT NULL REFERENCES users (id),
    section_id  text REFERENCES sections (id) ON DELETE CASCADE,
    role        text NOT NULL DEFAULT 'instructor'
                CHECK (role IN ('instructor', 'assistant')),
    assigned_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX faculty_assignments_unique
    ON faculty_assignments (course_id, faculty_id, coalesce(section_id, ''));
CREATE INDEX faculty_assignments_faculty ON faculty_assignments (faculty_id);
INSERT INTO faculty_assignments (course_id, faculty_id)
    SELECT id, faculty_id FROM courses;

ALTER TABLE enrolments ADD COLUMN section_id text REFERENCES sections (id);
CREATE INDEX enrolments_section ON enrolments (section_id);

ALTER TABLE rooms ADD COLUMN room_type text NOT NULL DEFAULT 'lecture_hall';
ALTER TABLE rooms ADD COLUMN capacity integer CHECK (capacity > 0);

-- A recurring weekly class: weekday 0 = Monday (Python's date.weekday()),
-- wall-clock times in the term's timezone.
CREATE TABLE timetable_slots (
    id          text PRIMARY KEY,
    section_id  text NOT NULL REFERENCES sections (id),
    room_id     text NOT NULL REFERENCES rooms (id),
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    starts_time time NOT NULL,
    ends_time   time NOT NULL,
    valid_from  date,
    valid_until date,
    kind        text NOT NULL DEFAULT 'lecture'
                CHECK (kind IN ('lecture', 'lab', 'tutorial')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_time > starts_time),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until >= valid_from)
);
CREATE INDEX timetable_slots_section ON timetable_slots (section_id);

-- Check-in and eligibility rules per course; a course without a row uses
-- these defaults.
CREATE TABLE course_rules (
    course_id            text PRIMARY KEY REFERENCES courses (id),
    grace_minutes        integer NOT NULL DEFAULT 10 CHECK (grace_minutes >= 0),
    late_cutoff_minutes  integer NOT NULL DEFAULT 30 CHECK (late_cutoff_minutes >= 0),
    opens_minutes_before integer NOT NULL DEFAULT 15 CHECK (opens_minutes_before >= 0),
    late_weight          numeric(4,3) NOT NULL DEFAULT 0.8 CHECK (late_weight BETWEEN 0 AND 1),
    warning_pct          numeric(5,2) NOT NULL DEFAULT 75 CHECK (warning_pct BETWEEN 0 AND 100),
    eligible_pct         numeric(5,2) NOT NULL DEFAULT 75 CHECK (eligible_pct BETWEEN 0 AND 100),
    condonable_pct       numeric(5,2) NOT NULL DEFAULT 65 CHECK (condonable_pct BETWEEN 0 AND 100),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           text
);

-- Sessions: where they came from and what faculty did to them.
-- rescheduled_from is the start the session had before its FIRST reschedule,
-- so (slot_id, coalesce(rescheduled_from, starts_at)) identifies the timetable
-- occurrence forever and regeneration never duplicates a moved session.
ALTER TABLE class_sessions ADD COLUMN section_id text REFERENCES sections (id);
ALTER TABLE class_sessions ADD COLUMN slot_id text REFERENCES timetable_slots (id) ON DELETE SET NULL;
ALTER TABLE class_sessions ADD COLUMN origin text NOT NULL DEFAULT 'manual'
    CHECK (origin IN ('timetable', 'manual'));
ALTER TABLE class_sessions ADD COLUMN topics text[] NOT NULL DEFAULT '{}';
ALTER TABLE class_sessions ADD COLUMN late_cutoff_minutes integer NOT NULL DEFAULT 30
    CHECK (late_cutoff_minutes >= 0);
ALTER TABLE class_sessions ADD COLUMN cancel_reason text;
ALTER TABLE class_sessions ADD COLUMN rescheduled_from timestamptz;
ALTER TABLE class_sessions ADD COLUMN opened_at timestamptz;
ALTER TABLE class_sessions ADD COLUMN opened_by text;
ALTER TABLE class_sessions ADD COLUMN closed_at timestamptz;
ALTER TABLE class_sessions ADD COLUMN closed_by text;
ALTER TABLE class_sessions ADD COLUMN created_by text;
-- Set by the scheduler once the session actor has marked the absentees.
ALTER TABLE class_sessions ADD COLUMN finalized_at timestamptz;
-- Sessions over before this existed are not closed again (no retroactive absentees).
UPDATE class_sessions SET finalized_at = ends_at, status = CASE WHEN status = 'cancelled' THEN status ELSE 'closed' END
    WHERE ends_at < now();
CREATE UNIQUE INDEX class_sessions_occurrence
    ON class_sessions (slot_id, (coalesce(rescheduled_from, starts_at)))
    WHERE slot_id IS NOT NULL;
CREATE INDEX class_sessions_course_time ON class_sessions (course_id, starts_at);
CREATE INDEX class_sessions_section_time ON class_sessions (section_id, starts_at);
CREATE INDEX class_sessions_unfinalized ON class_sessions (ends_at)
    WHERE finalized_at IS NULL AND status <> 'cancelled';

-- Who did what to a session, when (sessions are not attendance records, so
-- this is a plain history, not the hash-chained audit log).
CREATE TABLE session_events (
    id         bigserial PRIMARY KEY,
    session_id text NOT NULL REFERENCES class_sessions (id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX session_events_session ON session_events (session_id, at);
