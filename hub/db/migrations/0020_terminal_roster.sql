-- Terminal rosters: which student is which PIN on the campus's terminals, and which student
-- the hub has told each terminal about (hub/db/terminal_roster.py, docs/people.md).

-- A campus-wide PIN per student, as ZKTeco (ADMS) terminals know their users. Given by the
-- people CSV (`pin` column) or assigned from this sequence when the student is created; the
-- sequence skips PINs a CSV already took.
CREATE SEQUENCE student_terminal_pin_seq START 100001;

CREATE FUNCTION next_student_terminal_pin() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    candidate text;
BEGIN
    LOOP
        candidate := nextval('student_terminal_pin_seq')::text;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM students WHERE terminal_pin = candidate);
    END LOOP;
    RETURN candidate;
END
$$;

ALTER TABLE students ADD COLUMN terminal_pin text CHECK (terminal_pin ~ '^[A-Za-z0-9]{1,24}$');
UPDATE students SET terminal_pin = nextval('student_terminal_pin_seq')::text;
ALTER TABLE students ALTER COLUMN terminal_pin SET DEFAULT next_student_terminal_pin(),
                     ALTER COLUMN terminal_pin SET NOT NULL,
                     ADD CONSTRAINT students_terminal_pin_unique UNIQUE (terminal_pin);

-- What the hub has queued for each terminal (a roster-capable device: fingerprint module or
-- edge agent with ZKTeco terminals): one row per (device, student) it was told about. `pin`
-- is the PIN sent (NULL: none), `page` the fingerprint page the student is enrolled on there,
-- recorded from what ops assign or the terminal reports (`page_source`). No foreign key to
-- students: a deleted student's removal is planned from this row.
-- consent_ref: the consent record the enrolment rests on (issue 14 adds the consent table).
CREATE TABLE terminal_roster (
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    student_id  text NOT NULL,
    pin         text CHECK (pin ~ '^[A-Za-z0-9]{1,24}$'),
    page        integer CHECK (page BETWEEN 0 AND 65535),
    page_source text CHECK (page_source IN ('ops', 'terminal')),
    consent_ref text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, student_id),
    UNIQUE (device_id, page),
    CHECK (pin IS NOT NULL OR page IS NOT NULL),
    CHECK ((page IS NULL) = (page_source IS NULL))
);
CREATE INDEX terminal_roster_student ON terminal_roster (student_id);
