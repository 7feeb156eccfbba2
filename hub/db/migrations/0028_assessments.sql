-- Academics, part 1: the one table of graded work and the one table of marks.
-- Assignments (0029) and exams (0030) extend an assessment row; course grades
-- and GPA (0031) are computed from the marks here, weighted by `weight`.

-- Credits weight a course in the credit-weighted GPA (docs/academics.md).
ALTER TABLE courses ADD COLUMN credits numeric(4,1) NOT NULL DEFAULT 3
    CHECK (credits >= 0 AND credits <= 40);

-- One piece of graded work of a course in a term: an assignment, a quiz, a
-- practical, a midterm, an exam or a project. section_id NULL: every section of
-- the course in that term. weight: its share of the course grade in percent;
-- the course's weights need not add up to 100 while the term runs (the grade is
-- computed over what has been weighted so far; see hub/domain/grades.py).
CREATE TABLE assessments (
    id          bigserial PRIMARY KEY,
    course_id   text NOT NULL REFERENCES courses (id),
    term_id     text NOT NULL REFERENCES terms (id),
    section_id  text REFERENCES sections (id) ON DELETE CASCADE,
    kind        text NOT NULL
                CHECK (kind IN ('assignment', 'quiz', 'practical', 'midterm', 'exam', 'project')),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    max_marks   numeric(8,2) NOT NULL CHECK (max_marks > 0),
    weight      numeric(6,3) NOT NULL CHECK (weight >= 0 AND weight <= 100),
    -- The day it is held (quiz, exam) or due (assignment), in the term's timezone.
    held_on     date,
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assessments_course_term ON assessments (course_id, term_id);

-- A student's mark for one assessment. marks is what counts (after any late
-- penalty); raw_marks what the grader gave. status: graded (marks set),
-- absent (counts as 0), exempt (left out of the student's course grade).
CREATE TABLE assessment_marks (
    assessment_id bigint NOT NULL REFERENCES assessments (id) ON DELETE CASCADE,
    student_id    text NOT NULL REFERENCES students (id),
    status        text NOT NULL DEFAULT 'graded' CHECK (status IN ('graded', 'absent', 'exempt')),
    raw_marks     numeric(8,2) CHECK (raw_marks >= 0),
    marks         numeric(8,2) CHECK (marks >= 0),
    penalty_note  text,
    feedback      text,
    graded_by     text,
    graded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assessment_id, student_id),
    CHECK (status <> 'graded' OR marks IS NOT NULL)
);
CREATE INDEX assessment_marks_student ON assessment_marks (student_id);

-- Faculty release a course's grades for a term; before that row exists its
-- students see no marks, no course grade and no GPA contribution from it.
CREATE TABLE grade_releases (
    course_id   text NOT NULL REFERENCES courses (id),
    term_id     text NOT NULL REFERENCES terms (id),
    released_at timestamptz NOT NULL DEFAULT now(),
    released_by text,
    PRIMARY KEY (course_id, term_id)
);
