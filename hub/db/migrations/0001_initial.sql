-- CampusHub initial schema: identity, campus, devices, sessions, the ingest ledger.

CREATE TABLE users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'faculty', 'student', 'ops')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A student is a user with role 'student'; token_secret signs their rotating QR.
CREATE TABLE students (
    id           text PRIMARY KEY REFERENCES users (id),
    roll_number  text NOT NULL UNIQUE,
    token_secret bytea NOT NULL
);

CREATE TABLE rooms (
    id       text PRIMARY KEY,
    name     text NOT NULL,
    building text NOT NULL
);

CREATE TABLE courses (
    id         text PRIMARY KEY,
    code       text NOT NULL UNIQUE,
    title      text NOT NULL,
    faculty_id text NOT NULL REFERENCES users (id)
);

CREATE TABLE enrolments (
    course_id  text NOT NULL REFERENCES courses (id),
    student_id text NOT NULL REFERENCES students (id),
    PRIMARY KEY (course_id, student_id)
);
CREATE INDEX enrolments_student ON enrolments (student_id);

-- key: HMAC secret (alg hmac-sha256) or Ed25519 public key (alg ed25519).
CREATE TABLE devices (
    id         text PRIMARY KEY,
    room_id    text NOT NULL REFERENCES rooms (id),
    kind       text NOT NULL CHECK (kind IN ('qr_camera', 'fingerprint', 'sensor', 'edge_agent')),
    model      text NOT NULL DEFAULT '',
    alg        text NOT NULL CHECK (alg IN ('hmac-sha256', 'ed25519')),
    key        bytea NOT NULL,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_room ON devices (room_id);

CREATE TABLE class_sessions (
    id             text PRIMARY KEY,
    course_id      text NOT NULL REFERENCES courses (id),
    room_id        text NOT NULL REFERENCES rooms (id),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    grace_minutes  integer NOT NULL DEFAULT 10 CHECK (grace_minutes >= 0),
    opens_minutes_before integer NOT NULL DEFAULT 10 CHECK (opens_minutes_before >= 0),
    status         text NOT NULL DEFAULT 'scheduled'
                   CHECK (status IN ('scheduled', 'open', 'closed', 'cancelled')),
    CHECK (ends_at > starts_at)
);
CREATE INDEX class_sessions_room_time ON class_sessions (room_id, starts_at);

-- Dedup ledger: one row per MQTT message whose effects were committed.
-- key = the 16-byte event id for authenticated envelopes, sha256(topic, payload) otherwise.
CREATE TABLE processed_messages (
    dedup_key    bytea PRIMARY KEY,
    committed_at timestamptz NOT NULL DEFAULT now()
);

-- Every authenticated, accepted event.
CREATE TABLE events (
    event_id    uuid PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id),
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    device_ts   timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    session_id  text REFERENCES class_sessions (id),
    body        jsonb NOT NULL
);
CREATE INDEX events_device_ts ON events (device_id, device_ts);

-- Every rejected message, whatever the layer that rejected it.
CREATE TABLE rejected_events (
    id          bigserial PRIMARY KEY,
    dedup_key   bytea NOT NULL UNIQUE,
    event_id    uuid,
    device_id   text,
    topic       text NOT NULL,
    kind        text,
    reason      text NOT NULL,
    detail      text NOT NULL DEFAULT '',
    session_id  text,
    payload     bytea NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX rejected_events_reason ON rejected_events (reason, received_at);

CREATE TABLE attendance (
    session_id    text NOT NULL REFERENCES class_sessions (id),
    student_id    text NOT NULL REFERENCES students (id),
    status        text NOT NULL CHECK (status IN ('present', 'late', 'absent', 'excused')),
    checked_in_at timestamptz,
    source        text NOT NULL,
    event_id      uuid,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, student_id)
);
CREATE INDEX attendance_student ON attendance (student_id);

-- Tokens already used in a session; a second use is a replay.
CREATE TABLE token_uses (
    session_id   text NOT NULL REFERENCES class_sessions (id),
    student_id   text NOT NULL,
    token_window bigint NOT NULL,
    event_id     uuid NOT NULL,
    PRIMARY KEY (session_id, student_id, token_window)
);

-- Append-only record of every change to an attendance record.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    entity     text NOT NULL,
    entity_id  text NOT NULL,
    before     jsonb,
    after      jsonb,
    reason     text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);

CREATE TABLE sensor_readings (
    event_id  uuid PRIMARY KEY,
    device_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL,
    unit      text NOT NULL,
    device_ts timestamptz NOT NULL
);
CREATE INDEX sensor_readings_device_metric_ts ON sensor_readings (device_id, metric, device_ts);

-- Latest known health of each device (the device actor's state, persisted).
CREATE TABLE device_health (
    device_id      text PRIMARY KEY REFERENCES devices (id),
    online         boolean NOT NULL,
    last_seen      timestamptz,
    last_change    timestamptz NOT NULL,
    reason         text NOT NULL DEFAULT '',
    firmware       text NOT NULL DEFAULT '',
    uptime_s       bigint NOT NULL DEFAULT 0,
    outbox_depth   integer NOT NULL DEFAULT 0
);

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
