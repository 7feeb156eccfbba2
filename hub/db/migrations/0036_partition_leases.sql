-- Many workers (issue 13 part 2): the hub runs as several worker processes, on one or more
-- machines, against this database. The load is cut into partitions (a room's partition is
-- crc32(room_id) % P, hub/domain/partitions.py), and each partition is owned by one worker at a
-- time through a lease kept here (hub/db/partition_leases.py). Leases are judged by this
-- database's clock alone (now()), so the workers' own clocks do not matter. No personal data.

-- One row per partition, created on first read (never by this migration: P is a setting).
-- `owner` is the last worker that claimed it (NULL: never claimed, or released); the lease runs
-- while `expires_at > now()`. An expired row keeps its owner so that the next claim can tell
-- whether the owner changes. `fence` grows by one at every change of owner and never on a
-- renewal: whatever a worker does on behalf of a partition can carry its fence, and a smaller
-- fence is an older owner's.
CREATE TABLE partition_leases (
    partition   integer PRIMARY KEY CHECK (partition >= 0),
    owner       text,
    fence       bigint NOT NULL DEFAULT 0 CHECK (fence >= 0),
    expires_at  timestamptz,
    -- When the current owner got it (a renewal keeps it).
    acquired_at timestamptz,
    CHECK ((owner IS NULL) = (expires_at IS NULL) AND (owner IS NULL) = (acquired_at IS NULL))
);

-- The workers, by the heartbeat each writes every round of its lease keeper: a worker is live
-- while `seen_at` is within a lease of now(). Each live worker is counted in the fair share.
CREATE TABLE hub_workers (
    worker_id  text PRIMARY KEY CHECK (char_length(worker_id) BETWEEN 1 AND 200),
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
