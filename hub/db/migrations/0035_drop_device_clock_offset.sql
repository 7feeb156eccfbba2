-- Ingest at line rate (issue 13): the device_clock_offset function of 0034 has no caller.
--
-- A late check-in's clock offset now comes from its device actor, which keeps the device's
-- heartbeat samples in memory (hub.domain.device_health.ClockEvidence) and reads the stored ones
-- once per actor life (hub/db/checkin.py device_clock_samples, through 0034's partial index
-- events_heartbeats_received, which stays). The function cost a round trip and a pool reset per
-- check-in of a backlog.
DROP FUNCTION device_clock_offset(text, timestamptz);
