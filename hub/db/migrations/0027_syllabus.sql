-- Academics, syllabus and topic progress (issue 16 §1; hub/domain/syllabus.py, hub/db/syllabus.py,
-- docs/academics.md "Syllabus and topic progress").

-- A course's syllabus: ordered topics. position is 1-based and unique per course (deferred, so a
-- reorder rewrites every position in one statement); unit groups topics into a module ("Unit 2").
CREATE TABLE syllabus_topics (
    id          bigserial PRIMARY KEY,
    course_id   text NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 1),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    unit        text CHECK (unit IS NULL OR length(unit) BETWEEN 1 AND 120),
    est_minutes integer NOT NULL CHECK (est_minutes BETWEEN 1 AND 6000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT syllabus_topics_position UNIQUE (course_id, position) DEFERRABLE INITIALLY DEFERRED
);
CREATE UNIQUE INDEX syllabus_topics_title ON syllabus_topics (course_id, lower(title));

-- topic_id needs requires_id first. Both of one course and no cycle: checked by
-- hub.domain.syllabus.check_prerequisites before every write (a trigger could not name the cycle).
CREATE TABLE syllabus_prerequisites (
    topic_id    bigint NOT NULL REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    requires_id bigint NOT NULL REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    PRIMARY KEY (topic_id, requires_id),
    CHECK (topic_id <> requires_id)
);
CREATE INDEX syllabus_prerequisites_requires ON syllabus_prerequisites (requires_id);

-- What a session covered, picked from its course's syllabus. class_sessions.topics (text[],
-- migration 0002) stays: free-text notes about the session, shown as before.
CREATE TABLE session_topics (
    session_id text NOT NULL REFERENCES class_sessions (id) ON DELETE CASCADE,
    topic_id   bigint NOT NULL REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    tagged_by  text NOT NULL,
    tagged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, topic_id)
);
CREATE INDEX session_topics_topic ON session_topics (topic_id);

-- A faculty member's judgement of a student's understanding in one session, 1 (lost) to 5
-- (could teach it): for one topic, or for the whole session (topic_id NULL: every topic the
-- session covered). The latest judgement replaces the earlier one of the same scope.
CREATE TABLE topic_understanding (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL REFERENCES class_sessions (id) ON DELETE CASCADE,
    student_id  text NOT NULL REFERENCES students (id),
    topic_id    bigint REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
    recorded_by text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX topic_understanding_scope
    ON topic_understanding (session_id, student_id, coalesce(topic_id, 0));
CREATE INDEX topic_understanding_student ON topic_understanding (student_id);

-- Each student's progress per topic, derived (hub.db.syllabus.refresh_progress, on the rules of
-- hub.domain.syllabus.topic_status): recomputed from session_topics, attendance and
-- topic_understanding whenever those change through the syllabus paths, and before each read.
-- competency 0-5 (0 when nothing was observed: observations says how many judgements it rests on);
-- minutes_spent: the student's share of attended covering sessions.
CREATE TABLE topic_progress (
    student_id    text NOT NULL REFERENCES students (id),
    topic_id      bigint NOT NULL REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    status        text NOT NULL
                  CHECK (status IN ('not_started', 'in_progress', 'completed', 'mastered', 'needs_review')),
    competency    numeric(3,2) NOT NULL DEFAULT 0 CHECK (competency BETWEEN 0 AND 5),
    observations  integer NOT NULL DEFAULT 0 CHECK (observations >= 0),
    last_level    smallint CHECK (last_level BETWEEN 1 AND 5),
    minutes_spent integer NOT NULL DEFAULT 0 CHECK (minutes_spent >= 0),
    missed        boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, topic_id)
);
CREATE INDEX topic_progress_topic ON topic_progress (topic_id);
