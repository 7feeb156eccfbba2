-- Predictive maintenance (issue 16 §5): anomaly detectors fitted on the hourly telemetry, the
-- unusual hours they found, and which hours were scored. See docs/analytics.md ("Predictive
-- maintenance") and docs/device-health.md. No personal data: devices and rooms only.
-- The alarms an anomaly raises are ordinary rows of `alarms` (type 'telemetry_anomaly'; the type
-- column is free text), raised by the device's own actor like every alarm.

-- One fitted detector per (metric, room type). A fit inserts new rows and makes them the active
-- ones in one transaction; older rows stay as the fit history (the anomaly actor prunes them after 90 days).
CREATE TABLE anomaly_models (
    id            bigserial PRIMARY KEY,
    metric        text NOT NULL,
    room_type     text NOT NULL,
    detector      text NOT NULL CHECK (detector IN ('baseline', 'isolation_forest')),
    fitted_at     timestamptz NOT NULL,
    trained_from  timestamptz NOT NULL,
    trained_to    timestamptz NOT NULL,
    series        integer NOT NULL CHECK (series >= 0),
    hours         integer NOT NULL CHECK (hours >= 0),
    -- What the detector needs to score without refitting (the baseline's per-device medians and
    -- scales, by device id); {} when it is refitted at start instead (the forest).
    state         jsonb NOT NULL DEFAULT '{}',
    -- The fit's figures: share of training hours found unusual, fit seconds, skipped series...
    metrics       jsonb NOT NULL DEFAULT '{}',
    active        boolean NOT NULL DEFAULT true,
    CHECK (trained_from <= trained_to)
);
CREATE UNIQUE INDEX anomaly_models_one_active ON anomaly_models (metric, room_type) WHERE active;
CREATE INDEX anomaly_models_fitted_at ON anomaly_models (fitted_at);

-- Every unusual hour found: one row per device, metric and hour.
CREATE TABLE telemetry_anomalies (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    room_id     text,
    metric      text NOT NULL,
    unit        text NOT NULL DEFAULT '',
    hour        timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('high', 'low', 'stuck', 'dropout')),
    value       double precision,          -- the hour's mean; NULL when no reading arrived
    expected    double precision NOT NULL, -- the usual mean of this hour of the week
    readings    integer NOT NULL CHECK (readings >= 0),
    score       double precision NOT NULL CHECK (score >= 0),
    severity    text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    model_id    bigint REFERENCES anomaly_models (id) ON DELETE SET NULL,
    alarm_id    bigint REFERENCES alarms (id) ON DELETE SET NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, metric, hour)
);
CREATE INDEX telemetry_anomalies_hour ON telemetry_anomalies (hour DESC, id DESC);
CREATE INDEX telemetry_anomalies_room_hour ON telemetry_anomalies (room_id, hour DESC);

-- The hours already scored (the actor scores each complete hour once, after its roll-up).
CREATE TABLE anomaly_scored_hours (
    hour      timestamptz PRIMARY KEY,
    scored_at timestamptz NOT NULL DEFAULT now(),
    series    integer NOT NULL CHECK (series >= 0),
    anomalies integer NOT NULL CHECK (anomalies >= 0)
);

-- "Fit now" asked by ops (POST /api/v1/anomalies/fit): at most one waiting. The anomaly actor of the
-- process that serves the request is told at once; any hub's actor takes a waiting one up at its next
-- pass, so a request is never lost to a process whose actor was restarting.
CREATE TABLE anomaly_fit_requests (
    id           bigserial PRIMARY KEY,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    taken_at     timestamptz
);
CREATE UNIQUE INDEX anomaly_fit_requests_one_waiting ON anomaly_fit_requests ((true)) WHERE taken_at IS NULL;
