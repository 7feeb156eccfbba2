-- Check-in: the display-mode session secret, proxy-attendance
-- flags with their review state, and the phone fingerprints of display check-ins.

-- Secret of the classroom display's rotating code (hub/domain/display_code.py).
-- gen_random_uuid() draws from pg_strong_random(): 2 x 122 random bits.
ALTER TABLE class_sessions ADD COLUMN display_secret bytea NOT NULL
    DEFAULT (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- A check-in that looked like proxy attendance. The check-in itself is kept
-- (or, for a replayed token, rejected) and faculty review the flag:
-- 'accepted' leaves the record as it is, 'rejected' marks the student absent.
CREATE TABLE checkin_flags (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL REFERENCES class_sessions (id),
    student_id  text NOT NULL REFERENCES students (id),
    kind        text NOT NULL
                CHECK (kind IN ('shared_device', 'wrong_room', 'token_reuse', 'clock_skew')),
    detail      text NOT NULL DEFAULT '',
    evidence    jsonb NOT NULL DEFAULT '{}',
    -- The channel of the check-in that raised it: qr, biometric, display.
    source      text NOT NULL,
    event_id    uuid,
    raised_at   timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'accepted', 'rejected')),
    reviewed_by text REFERENCES users (id),
    reviewed_at timestamptz,
    review_note text NOT NULL DEFAULT '',
    CHECK ((state = 'open') = (reviewed_at IS NULL))
);
CREATE INDEX checkin_flags_session ON checkin_flags (session_id, state, raised_at);

-- Every display-mode check-in attempt, accepted or not. device_hash is the
-- SHA-256 of the phone's random device cookie (a fingerprint, never the
-- cookie); nonce is the pending check-in token's, so a token used twice is seen.
CREATE TABLE display_checkins (
    id          bigserial PRIMARY KEY,
    session_id  text NOT NULL REFERENCES class_sessions (id),
    student_id  text NOT NULL REFERENCES students (id),
    scanned_at  timestamptz NOT NULL,
    code_window bigint NOT NULL,
    device_hash bytea NOT NULL,
    nonce       bytea NOT NULL,
    user_agent  text NOT NULL DEFAULT '',
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX display_checkins_session ON display_checkins (session_id, scanned_at);
