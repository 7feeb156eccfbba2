-- Broker-side quarantine of a device that flooded beyond its rate limit (issue 12 §5;
-- hub/db/quarantine.py, hub/services/quarantine.py, docs/reliability.md "Fairness").
-- One row per device: its latest quarantine. While `released_at IS NULL AND until > now()` the
-- rendered Mosquitto files leave the device out (hub/adapters/mosquitto_auth.py), in every hub
-- process and in `campushub devices export-mosquitto`, and across restarts. `cooldown_s` is the
-- length given, so a repeat soon after doubles it; `strikes` counts repeats within the window.
CREATE TABLE device_quarantines (
    device_id   text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    reason      text NOT NULL CHECK (char_length(reason) <= 500),
    since       timestamptz NOT NULL,
    until       timestamptz NOT NULL CHECK (until > since),
    cooldown_s  double precision NOT NULL CHECK (cooldown_s > 0),
    strikes     integer NOT NULL DEFAULT 1 CHECK (strikes >= 1),
    released_at timestamptz,
    released_by text
);
