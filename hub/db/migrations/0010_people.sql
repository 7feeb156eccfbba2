-- People: what admins need to manage accounts (docs/people.md).
--
-- Retention: an account is never deleted while records must be kept about it
-- (attendance, leave, corrections, audit entries, tickets, devices or sessions
-- it registered, courses it teaches): hub/db/users.py refuses and the admin
-- deactivates it instead. A deactivated account keeps its row, its name and
-- its records for as long as the campus keeps attendance (at least the
-- academic year plus any appeal period); it cannot log in and its tokens stop
-- working at once. Deleting is for accounts made by mistake, with no records.

-- NULL: active. Set: deactivated at that time (cannot log in; records kept).
ALTER TABLE users ADD COLUMN deactivated_at timestamptz;
-- Optional contact address; unique, whatever its case, when set.
ALTER TABLE users ADD COLUMN email text;
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE UNIQUE INDEX users_email_unique ON users (lower(email)) WHERE email IS NOT NULL;
-- Search (case-insensitive prefix: username, display name) and the admin listing's order.
CREATE INDEX users_username_lower ON users (lower(username) text_pattern_ops);
CREATE INDEX users_display_name_lower ON users (lower(display_name) text_pattern_ops);
CREATE INDEX users_role_active ON users (role, username) WHERE deactivated_at IS NULL;

-- The student-information system's program (e.g. "B.Tech CSE") and section (e.g. "A").
ALTER TABLE students ADD COLUMN program text;
ALTER TABLE students ADD COLUMN section text;
CREATE INDEX students_roll_number_lower ON students (lower(roll_number) text_pattern_ops);
