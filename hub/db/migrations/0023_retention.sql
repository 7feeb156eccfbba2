-- Retention (issue 14 §1, docs/data-lifecycle.md): the two tables that grow with every message are
-- partitioned by UTC day, so that pruning drops partitions instead of running DELETEs.
--
-- * events: range-partitioned by received_at (the hub's clock, so rows land in today's partition
--   whatever the device's clock says). The existing table becomes the DEFAULT partition, keeping
--   its rows; the retention pass (hub/db/retention.py) creates the daily partitions, moving each
--   kept day's rows out of DEFAULT, and deletes what DEFAULT holds beyond the retention.
--   Nothing references events by key; readers filter on device_id/received_at (hub/db/checkin.py
--   device_clock_offset) or session_id (hub/db/timetable.py), both unchanged.
--   The primary key must contain the partition key: (event_id, received_at). Uniqueness of an
--   event is the dedup ledger's job (below), as it always was.
--
-- * processed_messages (the dedup ledger): range-partitioned by ledger_day, the UTC date of the
--   event's own signed timestamp (the writer's hub/db/ingest.py; unsigned messages: the day they
--   were received). A redelivery carries the same signature, hence the same day, so the key
--   (dedup_key, ledger_day) is unique exactly when dedup_key is. The hub refuses events signed
--   longer ago than hub.core.config.EVENT_MAX_AGE_S ('expired'), so a day's partition can be
--   dropped once that age has passed its end: whatever of that day is redelivered later is
--   refused, never applied twice. Existing rows get the signed day of their event where the
--   events table has it, else the day they were committed, and stay in the DEFAULT partition
--   until the pass moves or prunes them.

ALTER TABLE events RENAME TO events_default;
ALTER TABLE events_default DROP CONSTRAINT events_pkey;
ALTER INDEX events_device_ts RENAME TO events_default_device_ts;
ALTER TABLE events_default RENAME CONSTRAINT events_device_id_fkey TO events_default_device_id_fkey;
ALTER TABLE events_default RENAME CONSTRAINT events_session_id_fkey TO events_default_session_id_fkey;
CREATE TABLE events (
    event_id     uuid NOT NULL,
    device_id    text NOT NULL REFERENCES devices (id),
    seq          bigint NOT NULL,
    kind         text NOT NULL,
    device_ts    timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    session_id   text REFERENCES class_sessions (id),
    body         jsonb NOT NULL,
    PRIMARY KEY (event_id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX events_device_ts ON events (device_id, device_ts);
ALTER TABLE events ATTACH PARTITION events_default DEFAULT;
-- (The attach adopts the old table's equivalent foreign keys and index as the partition's own.)

ALTER TABLE processed_messages RENAME TO processed_messages_default;
ALTER TABLE processed_messages_default DROP CONSTRAINT processed_messages_pkey;
ALTER TABLE processed_messages_default ADD COLUMN ledger_day date;
UPDATE processed_messages_default AS p
   SET ledger_day = coalesce(
       (SELECT (e.device_ts AT TIME ZONE 'UTC')::date FROM events e
         WHERE length(p.dedup_key) = 16 AND e.event_id = encode(p.dedup_key, 'hex')::uuid LIMIT 1),
       (p.committed_at AT TIME ZONE 'UTC')::date);
ALTER TABLE processed_messages_default ALTER COLUMN ledger_day SET NOT NULL;
CREATE TABLE processed_messages (
    dedup_key    bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    ledger_day   date NOT NULL,
    PRIMARY KEY (dedup_key, ledger_day)
) PARTITION BY RANGE (ledger_day);
ALTER TABLE processed_messages ATTACH PARTITION processed_messages_default DEFAULT;

-- Smaller tables are pruned with batched DELETEs by age (hub/db/retention.py); these indexes make
-- each batch an index range scan instead of a sequential scan.
CREATE INDEX rejected_events_received_at ON rejected_events (received_at);
CREATE INDEX rejection_tallies_window_start ON rejection_tallies (window_start);
CREATE INDEX display_checkins_received_at ON display_checkins (received_at);
CREATE INDEX notifications_created_at ON notifications (created_at);
CREATE INDEX device_commands_finished ON device_commands (updated_at)
    WHERE status NOT IN ('pending', 'sent');
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE state <> 'pending';
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX one_time_codes_expires_at ON one_time_codes (expires_at);
CREATE INDEX class_sessions_starts_at ON class_sessions (starts_at);
