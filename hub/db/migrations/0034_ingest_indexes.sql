-- Ingest at line rate (issue 13): what the check-in path's device_clock_offset cost PostgreSQL.
--
-- hub/db/checkin.py device_clock_offset asks, for a check-in received more than MAX_CLOCK_SKEW
-- after its device time (buffered at the edge, or a whole backlog drained after a restart), for
-- the device's heartbeats received in the last 15 minutes.
--
-- 1. The index. events had none on received_at per device: each such check-in read every event of
--    the device in today's partition (events_device_ts is on device_ts) and filtered them.
--    Heartbeats are a small share of the rows, so this partial index is small and only heartbeat
--    inserts maintain it. Created on the partitioned parent, it cascades to every partition,
--    DEFAULT and those made later included.
CREATE INDEX events_heartbeats_received ON events (device_id, received_at) WHERE kind = 'heartbeat';

-- 2. The plan. As a prepared statement, the query got a custom plan on every call (partition
--    pruning makes each one look cheaper than the generic plan), so each call was planned again:
--    about 0.35 ms of planning for 0.03 ms of execution, measured (docs/performance.md, "Drain of a
--    backlog"). In a PL/pgSQL function with plan_cache_mode = force_generic_plan it is planned once
--    per connection; partitions older than p_since are pruned when it runs.
CREATE FUNCTION device_clock_offset(p_device text, p_since timestamptz) RETURNS interval
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (SELECT min(received_at - device_ts) FROM events
            WHERE device_id = p_device AND received_at >= p_since
              AND kind = 'heartbeat' AND (body->>'outbox_depth')::bigint = 0);
END
$$;
