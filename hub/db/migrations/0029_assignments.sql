-- Academics, part 2: assignments. An assignment IS an assessment (kind
-- 'assignment', migration 0028); this table adds what only assignments have.
-- Its marks go into assessment_marks (raw_marks = what the grader gave,
-- marks = after the late penalty, penalty_note says why): there is no second
-- table of marks. The late-penalty rules are hub/domain/late_policy.py.
CREATE TABLE assignments (
    assessment_id       bigint PRIMARY KEY REFERENCES assessments (id) ON DELETE CASCADE,
    instructions        text NOT NULL DEFAULT '' CHECK (length(instructions) <= 20000),
    opens_at            timestamptz,
    due_at              timestamptz NOT NULL,
    -- No submission after it (a student's extension may move it). NULL: late work is accepted
    -- until the grader returns the work (the due date still makes it late).
    cut_off_at          timestamptz,
    -- Late policy: lateness within grace_minutes costs nothing; beyond, penalty_percent of the
    -- maximum marks per 24 h late ('day': pro rata; 'started_day': each started 24 h counts
    -- whole), at most penalty_cap_percent, and never below pass_percent of the maximum if the
    -- work had passed (NULL: no floor).
    grace_minutes       integer NOT NULL DEFAULT 0 CHECK (grace_minutes BETWEEN 0 AND 10080),
    penalty_percent     numeric(6,3) NOT NULL DEFAULT 0 CHECK (penalty_percent BETWEEN 0 AND 100),
    penalty_period      text NOT NULL DEFAULT 'started_day' CHECK (penalty_period IN ('day', 'started_day')),
    penalty_cap_percent numeric(6,3) NOT NULL DEFAULT 100 CHECK (penalty_cap_percent BETWEEN 0 AND 100),
    pass_percent        numeric(6,3) CHECK (pass_percent BETWEEN 0 AND 100),
    max_attempts        integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 20),
    -- NULL: a draft, invisible to students.
    published_at        timestamptz,
    CHECK (opens_at IS NULL OR opens_at < due_at),
    CHECK (cut_off_at IS NULL OR cut_off_at >= due_at)
);
CREATE INDEX assignments_due ON assignments (due_at) WHERE published_at IS NOT NULL;

-- A student's own due date (and cut-off) for one assignment.
CREATE TABLE assignment_extensions (
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    student_id    text NOT NULL REFERENCES students (id),
    due_at        timestamptz NOT NULL,
    cut_off_at    timestamptz CHECK (cut_off_at IS NULL OR cut_off_at >= due_at),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    granted_by    text,
    granted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assessment_id, student_id)
);
CREATE INDEX assignment_extensions_student ON assignment_extensions (student_id);

-- An optional rubric: the marks are the sum of the criteria's points.
CREATE TABLE assignment_rubric_criteria (
    id            bigserial PRIMARY KEY,
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 1),
    criterion     text NOT NULL CHECK (length(criterion) BETWEEN 1 AND 300),
    max_points    numeric(8,2) NOT NULL CHECK (max_points > 0),
    UNIQUE (assessment_id, position)
);

-- Files the faculty attach to the instructions. Types are checked by content (like leave documents).
-- Stored sealed with the campus key like leave documents (migration 0025; hub/db/sealed_secrets.py,
-- bound to the row's id): the blob is the file + 30 bytes. size_bytes and sha256 stay in the clear.
CREATE TABLE assignment_attachments (
    id            bigserial PRIMARY KEY,
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    filename      text NOT NULL,
    content_type  text NOT NULL CHECK (content_type IN ('application/pdf', 'image/jpeg', 'image/png')),
    size_bytes    integer NOT NULL CHECK (size_bytes > 0 AND size_bytes <= 5242880),
    sha256        bytea NOT NULL,
    data_sealed   bytea NOT NULL,
    uploaded_by   text,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (octet_length(data_sealed) = size_bytes + 30)
);
CREATE INDEX assignment_attachments_assessment ON assignment_attachments (assessment_id);
-- Ciphertext does not compress: out of line as it is, so reading a blob's key id fetches a slice.
ALTER TABLE assignment_attachments ALTER COLUMN data_sealed SET STORAGE EXTERNAL;

-- Every attempt a student submitted; the latest counts. late_minutes: after the student's due
-- date (0 = on time). sha256: the receipt, over the canonical manifest of what was sent
-- (hub/db/submissions.py receipt_hash). status: returned once graded and given back.
CREATE TABLE assignment_submissions (
    id            bigserial PRIMARY KEY,
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    student_id    text NOT NULL REFERENCES students (id),
    attempt       integer NOT NULL CHECK (attempt >= 1),
    submitted_at  timestamptz NOT NULL,
    text          text NOT NULL DEFAULT '' CHECK (length(text) <= 50000),
    late_minutes  integer NOT NULL DEFAULT 0 CHECK (late_minutes >= 0),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    status        text NOT NULL DEFAULT 'submitted' CHECK (status IN ('submitted', 'returned')),
    UNIQUE (assessment_id, student_id, attempt)
);
CREATE INDEX assignment_submissions_student ON assignment_submissions (student_id);

-- The files of an attempt, sealed with the campus key like leave documents (bound to the row's id;
-- the blob is the file + 30 bytes). sha256 is over the plaintext, as the receipt's manifest is.
CREATE TABLE submission_files (
    id            bigserial PRIMARY KEY,
    submission_id bigint NOT NULL REFERENCES assignment_submissions (id) ON DELETE CASCADE,
    filename      text NOT NULL,
    content_type  text NOT NULL CHECK (content_type IN ('application/pdf', 'image/jpeg', 'image/png')),
    size_bytes    integer NOT NULL CHECK (size_bytes > 0 AND size_bytes <= 5242880),
    sha256        bytea NOT NULL,
    data_sealed   bytea NOT NULL,
    CHECK (octet_length(data_sealed) = size_bytes + 30)
);
CREATE INDEX submission_files_submission ON submission_files (submission_id);
ALTER TABLE submission_files ALTER COLUMN data_sealed SET STORAGE EXTERNAL;

-- A grader's points per rubric criterion for a student (their sum is the raw marks).
CREATE TABLE rubric_scores (
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    student_id    text NOT NULL REFERENCES students (id),
    criterion_id  bigint NOT NULL REFERENCES assignment_rubric_criteria (id) ON DELETE CASCADE,
    points        numeric(8,2) NOT NULL CHECK (points >= 0),
    PRIMARY KEY (assessment_id, student_id, criterion_id)
);
CREATE INDEX rubric_scores_student ON rubric_scores (student_id);

-- The syllabus topics (migration 0027) an assessment covers.
CREATE TABLE assessment_topics (
    assessment_id bigint NOT NULL REFERENCES assessments (id) ON DELETE CASCADE,
    topic_id      bigint NOT NULL REFERENCES syllabus_topics (id) ON DELETE CASCADE,
    PRIMARY KEY (assessment_id, topic_id)
);

-- The "due in 24 h" reminder was sent to this student for this assignment: at most once.
CREATE TABLE assignment_reminders (
    assessment_id bigint NOT NULL REFERENCES assignments (assessment_id) ON DELETE CASCADE,
    student_id    text NOT NULL REFERENCES students (id),
    sent_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assessment_id, student_id)
);
CREATE INDEX assignment_reminders_student ON assignment_reminders (student_id);
