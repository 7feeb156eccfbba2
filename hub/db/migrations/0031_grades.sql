-- Academics, grades: the campus's grade scale and the final result of each
-- finished course. Course percentages, letters and GPAs are computed from
-- assessment_marks (0028) by hub/domain/grades.py; only a finished course's
-- result is stored, so a later scale edit never rewrites a transcript.

-- A grade scale: letter (A..F with points), points (e.g. a 10-point scale) or
-- percentage bands. One scale is active for the campus (the partial unique index).
CREATE TABLE grade_scales (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind       text NOT NULL CHECK (kind IN ('letter', 'points', 'percentage')),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);
CREATE UNIQUE INDEX grade_scales_one_active ON grade_scales (active) WHERE active;

-- A band covers [min_percent, the next band's min_percent); the lowest band
-- starts at 0, so the bands neither overlap nor leave gaps (checked on save by
-- hub.domain.grades.Scale, the one rule).
CREATE TABLE grade_bands (
    scale_id    bigint NOT NULL REFERENCES grade_scales (id) ON DELETE CASCADE,
    letter      text NOT NULL CHECK (length(letter) BETWEEN 1 AND 20),
    min_percent numeric(6,3) NOT NULL CHECK (min_percent >= 0 AND min_percent <= 100),
    points      numeric(4,2) NOT NULL CHECK (points >= 0 AND points <= 10),
    is_pass     boolean NOT NULL,
    PRIMARY KEY (scale_id, letter),
    UNIQUE (scale_id, min_percent)
);

-- The default 4.0 letter scale; pass from D.
WITH s AS (INSERT INTO grade_scales (name, kind) VALUES ('4.0 letter scale', 'letter') RETURNING id)
INSERT INTO grade_bands (scale_id, letter, min_percent, points, is_pass)
SELECT s.id, b.letter, b.min_percent, b.points, b.is_pass FROM s, (VALUES
    ('A', 90, 4.0, true), ('A-', 85, 3.7, true), ('B+', 80, 3.3, true), ('B', 75, 3.0, true),
    ('B-', 70, 2.7, true), ('C+', 65, 2.3, true), ('C', 60, 2.0, true), ('D', 50, 1.0, true),
    ('F', 0, 0.0, false)
) AS b (letter, min_percent, points, is_pass);

-- The final result of a finished course: written when its grades are released
-- and its term has ended (hub.db.grades.finalize_due), or by an admin recording
-- a withdrawal. percent/letter/points are NULL for a withdrawal; points are 0
-- for a failed course (it counts in the GPA with 0 points, a withdrawal does not
-- count). credits: the course's credits when it was finalized.
CREATE TABLE course_results (
    student_id   text NOT NULL REFERENCES students (id),
    course_id    text NOT NULL REFERENCES courses (id),
    term_id      text NOT NULL REFERENCES terms (id),
    percent      numeric(6,3) CHECK (percent >= 0 AND percent <= 100),
    letter       text,
    points       numeric(4,2) CHECK (points >= 0),
    credits      numeric(4,1) NOT NULL CHECK (credits >= 0),
    outcome      text NOT NULL CHECK (outcome IN ('passed', 'failed', 'withdrawn')),
    finalized_at timestamptz NOT NULL DEFAULT now(),
    finalized_by text,
    PRIMARY KEY (student_id, course_id, term_id),
    CHECK ((outcome = 'withdrawn') = (percent IS NULL)),
    CHECK ((percent IS NULL) = (letter IS NULL) AND (letter IS NULL) = (points IS NULL))
);
CREATE INDEX course_results_course_term ON course_results (course_id, term_id);
CREATE INDEX course_results_term ON course_results (term_id);
