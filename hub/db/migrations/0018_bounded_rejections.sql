-- Bounded intake (issue 12 §3): a rejected message is kept as its size, its SHA-256 and its
-- first 256 bytes (rejected_events.payload now holds that head), with its topic and detail
-- cut to a bound; rejections beyond a per-source, per-reason number a minute are only counted
-- (rejection_tallies). The bounds are hub/db/ingest.py's REJECTED_* constants.

-- NULL size and hash: the row keeps its payload whole (rows written by hand, e.g. in tests).
ALTER TABLE rejected_events
    ADD COLUMN payload_size   integer,
    ADD COLUMN payload_sha256 bytea;

-- Existing rows stay readable; a 32 MiB payload shrinks to its head (VACUUM FULL returns the space).
UPDATE rejected_events
   SET payload_size = octet_length(payload),
       payload_sha256 = sha256(payload),
       payload = substring(payload FROM 1 FOR 256),
       topic = left(topic, 256),
       detail = left(detail, 1000);

ALTER TABLE rejected_events
    ADD CONSTRAINT rejected_events_payload_head CHECK (octet_length(payload) <= 256),
    ADD CONSTRAINT rejected_events_topic_bound CHECK (char_length(topic) <= 256),
    ADD CONSTRAINT rejected_events_detail_bound CHECK (char_length(detail) <= 1000);

-- One row per source (a registered device id, or 'unknown' for everything else), reason and
-- minute: how many rejections arrived, and how many of them were only counted (not kept as rows).
CREATE TABLE rejection_tallies (
    source       text NOT NULL,
    reason       text NOT NULL,
    window_start timestamptz NOT NULL,
    offered      bigint NOT NULL CHECK (offered > 0),
    suppressed   bigint NOT NULL DEFAULT 0 CHECK (suppressed >= 0 AND suppressed <= offered),
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    PRIMARY KEY (source, reason, window_start)
);
CREATE INDEX rejection_tallies_suppressed ON rejection_tallies (last_seen) WHERE suppressed > 0;
