-- Device health (all fields, history), telemetry partitions and aggregates, thresholds, alarms.
-- See docs/device-health.md.

-- ---------------------------------------------------------------- device health

-- 0002 adds rooms.room_type; IF NOT EXISTS keeps this file valid on its own.
ALTER TABLE rooms ADD COLUMN IF NOT EXISTS room_type text NOT NULL DEFAULT 'lecture_hall';

ALTER TABLE device_health
    ADD COLUMN status_ts              bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_connect_at        timestamptz,
    ADD COLUMN last_connect_reason    text NOT NULL DEFAULT '',
    ADD COLUMN last_disconnect_at     timestamptz,
    ADD COLUMN last_disconnect_reason text NOT NULL DEFAULT '',
    ADD COLUMN battery_pct            double precision,
    ADD COLUMN signal_dbm             integer,
    ADD COLUMN clock_skew_ms          bigint,
    ADD COLUMN error_count            integer NOT NULL DEFAULT 0,
    ADD COLUMN updated_at             timestamptz NOT NULL DEFAULT now();

-- One row per online/offline transition and per firmware change, with the health at that moment.
CREATE TABLE device_health_history (
    id            bigserial PRIMARY KEY,
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    change        text NOT NULL CHECK (change IN ('online', 'offline', 'firmware')),
    online        boolean NOT NULL,
    reason        text NOT NULL DEFAULT '',
    firmware      text NOT NULL DEFAULT '',
    uptime_s      bigint NOT NULL DEFAULT 0,
    outbox_depth  integer NOT NULL DEFAULT 0,
    battery_pct   double precision,
    signal_dbm    integer,
    clock_skew_ms bigint,
    error_count   integer NOT NULL DEFAULT 0
);
CREATE INDEX device_health_history_device_at ON device_health_history (device_id, at DESC, id DESC);
CREATE INDEX device_health_history_at ON device_health_history (at);

-- ---------------------------------------------------------------- telemetry

-- sensor_readings becomes a table range-partitioned by device time: one partition per UTC
-- day (sensor_readings_pYYYYMMDD, created ahead by the telemetry actor) plus a DEFAULT
-- partition, so a reading far in the past or the future is kept rather than refused.
-- No primary key on event_id: the dedup ledger (processed_messages) already makes a
-- redelivered reading change nothing, and a partitioned key would have to include device_ts.
ALTER TABLE sensor_readings RENAME TO sensor_readings_0001;
ALTER INDEX sensor_readings_device_metric_ts RENAME TO sensor_readings_0001_device_metric_ts;
CREATE TABLE sensor_readings (
    event_id  uuid NOT NULL,
    device_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL,
    unit      text NOT NULL,
    device_ts timestamptz NOT NULL
) PARTITION BY RANGE (device_ts);
CREATE TABLE sensor_readings_default PARTITION OF sensor_readings DEFAULT;
CREATE INDEX sensor_readings_device_metric_ts ON sensor_readings (device_id, metric, device_ts);
INSERT INTO sensor_readings SELECT event_id, device_id, metric, value, unit, device_ts FROM sensor_readings_0001;
DROP TABLE sensor_readings_0001;

-- Hourly aggregates, kept much longer than raw readings. sum and count (not avg) so that
-- readings arriving after their raw partition was dropped can still be merged in.
CREATE TABLE sensor_readings_hourly (
    device_id text NOT NULL,
    metric    text NOT NULL,
    hour      timestamptz NOT NULL,
    unit      text NOT NULL,
    n         bigint NOT NULL CHECK (n > 0),
    sum       double precision NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    PRIMARY KEY (device_id, metric, hour)
);
CREATE INDEX sensor_readings_hourly_hour ON sensor_readings_hourly (hour);

-- ---------------------------------------------------------------- thresholds

-- Scope: room_id (one room), else room_type (every room of that type), else neither (campus-wide).
-- For a room, per (metric, op), the most specific scope that has enabled rules wins.
CREATE TABLE threshold_rules (
    id          bigserial PRIMARY KEY,
    metric      text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]{0,31}$'),
    room_type   text,
    room_id     text REFERENCES rooms (id) ON DELETE CASCADE,
    op          text NOT NULL CHECK (op IN ('above', 'below')),
    value       double precision NOT NULL,
    clear_value double precision NOT NULL,
    duration_s  integer NOT NULL DEFAULT 0 CHECK (duration_s >= 0 AND duration_s <= 604800),
    severity    text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    CHECK (room_type IS NULL OR room_id IS NULL),
    -- Hysteresis: the alarm clears only once the value is back past clear_value.
    CHECK ((op = 'above' AND clear_value <= value) OR (op = 'below' AND clear_value >= value))
);
CREATE INDEX threshold_rules_metric ON threshold_rules (metric);

INSERT INTO threshold_rules (metric, room_type, op, value, clear_value, duration_s, severity, updated_by) VALUES
    ('temperature', NULL, 'above', 30, 28, 300, 'major', 'default'),
    ('temperature', NULL, 'above', 35, 33, 60, 'critical', 'default'),
    ('temperature', NULL, 'below', 12, 14, 600, 'minor', 'default'),
    ('temperature', 'server_room', 'above', 27, 25, 120, 'major', 'default'),
    ('temperature', 'server_room', 'above', 32, 30, 60, 'critical', 'default'),
    ('humidity', NULL, 'above', 70, 65, 600, 'minor', 'default'),
    ('humidity', NULL, 'above', 85, 80, 300, 'major', 'default'),
    ('humidity', NULL, 'below', 20, 25, 1800, 'warning', 'default'),
    ('co2', NULL, 'above', 1000, 900, 300, 'warning', 'default'),
    ('co2', NULL, 'above', 1500, 1300, 300, 'major', 'default'),
    ('co2', NULL, 'above', 2500, 2000, 60, 'critical', 'default'),
    ('noise', NULL, 'above', 85, 80, 300, 'minor', 'default'),
    ('power', NULL, 'above', 3000, 2700, 300, 'major', 'default'),
    ('water_leak', NULL, 'above', 0.5, 0.5, 0, 'critical', 'default'),
    ('lamp_hours', NULL, 'above', 2500, 2500, 0, 'warning', 'default'),
    ('lamp_hours', NULL, 'above', 3000, 3000, 0, 'minor', 'default');

-- The evaluation state of each rule on each device, so a restarted hub neither forgets a
-- breach that has lasted 4 of its 5 minutes nor raises a second alarm for an active one.
CREATE TABLE threshold_state (
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    rule_id       bigint NOT NULL REFERENCES threshold_rules (id) ON DELETE CASCADE,
    pending_since timestamptz,
    active        boolean NOT NULL DEFAULT false,
    last_ts       timestamptz NOT NULL,
    PRIMARY KEY (device_id, rule_id)
);

-- ---------------------------------------------------------------- alarms

CREATE TABLE alarms (
    id         bigserial PRIMARY KEY,
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    room_id    text,
    type       text NOT NULL,
    severity   text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    state      text NOT NULL CHECK (state IN ('active_unacked', 'active_acked', 'cleared_unacked', 'cleared_acked')),
    raised_at  timestamptz NOT NULL,
    acked_at   timestamptz,
    acked_by   text,
    cleared_at timestamptz,
    cleared_by text,
    value      double precision,
    message    text NOT NULL DEFAULT '',
    details    jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- At most one not-cleared alarm per device and type; any number of types at once,
-- and a cleared (even unacknowledged) alarm never blocks a new one.
CREATE UNIQUE INDEX alarms_one_active_per_type ON alarms (device_id, type)
    WHERE state IN ('active_unacked', 'active_acked');
CREATE INDEX alarms_state_raised ON alarms (state, raised_at DESC);
CREATE INDEX alarms_device_raised ON alarms (device_id, raised_at DESC);
