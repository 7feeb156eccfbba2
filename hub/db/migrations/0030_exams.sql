-- Academics, part 3: where and when an exam (or a quiz, practical, midterm or
-- project presentation held in a room) is sat. An assessment row (0028) says
-- what is marked; a sitting says who sits it, in which room, from when to when.
-- section_id: every student of that section sits it (except those with a sitting
-- of their own for the same assessment). student_id: a make-up or accommodation
-- sitting for one student. Exactly one of the two. Clashes (the room, the
-- section's classes, the students' other sittings) are refused by
-- hub/db/exams.py on the rules of hub/domain/exam_schedule.py, inside the
-- transaction that writes the row, under the room's advisory lock.
CREATE TABLE exam_sittings (
    id            bigserial PRIMARY KEY,
    assessment_id bigint NOT NULL REFERENCES assessments (id) ON DELETE CASCADE,
    section_id    text REFERENCES sections (id) ON DELETE CASCADE,
    student_id    text REFERENCES students (id),
    room_id       text NOT NULL REFERENCES rooms (id),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    -- Shown to the students (e.g. "bring a calculator", "extra 30 minutes agreed").
    note          text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK ((section_id IS NULL) <> (student_id IS NULL))
);
CREATE INDEX exam_sittings_assessment ON exam_sittings (assessment_id);
CREATE INDEX exam_sittings_room_time ON exam_sittings (room_id, starts_at);
CREATE INDEX exam_sittings_section ON exam_sittings (section_id) WHERE section_id IS NOT NULL;
CREATE INDEX exam_sittings_student ON exam_sittings (student_id) WHERE student_id IS NOT NULL;
-- One sitting per section and one per student for each assessment.
CREATE UNIQUE INDEX exam_sittings_one_per_section ON exam_sittings (assessment_id, section_id)
    WHERE section_id IS NOT NULL;
CREATE UNIQUE INDEX exam_sittings_one_per_student ON exam_sittings (assessment_id, student_id)
    WHERE student_id IS NOT NULL;
