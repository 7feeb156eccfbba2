-- Several hub workers on one database (issue 13 part 2; hub/db/pg_listen.py): a row one
-- worker writes and another must act on is announced with NOTIFY, which PostgreSQL delivers
-- at the commit to every listening session. Triggers, so that every writer announces it
-- (the web, the CLI, the terminal-roster keeper), not only the hub's own code paths.

-- A new command (hub/db/device_commands.py create_command, from any worker's web or service):
-- the worker holding the command dispatcher's lock publishes it (hub/pipeline/commands.py).
CREATE FUNCTION notify_device_command() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('campushub_device_command', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER device_commands_notify AFTER INSERT ON device_commands
    FOR EACH ROW EXECUTE FUNCTION notify_device_command();

-- A quarantine started or ended (hub/db/quarantine.py): every worker's quarantine keeper arms
-- or cancels its cool-down timer and tells the device's actor if it runs there
-- (hub/pipeline/quarantine.py). `until` is the quarantine's identity: a timer ends only the
-- quarantine it was armed for.
CREATE FUNCTION notify_device_quarantine() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('campushub_device_quarantine', json_build_object(
        'device_id', NEW.device_id, 'until', NEW.until, 'released', NEW.released_at IS NOT NULL,
        'by', NEW.released_by)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER device_quarantines_notify AFTER INSERT OR UPDATE ON device_quarantines
    FOR EACH ROW EXECUTE FUNCTION notify_device_quarantine();
