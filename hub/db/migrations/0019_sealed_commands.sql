-- Sealed command arguments (issue 12 §4, issue 14 §4; schemas/_sealed.py, hub/db/device_commands.py).
-- Arguments carrying personal or biometric data are sealed to the target device when the command
-- is created: `args` keeps only the other arguments, `sealed` the AES-256-GCM blob, and
-- `sealed_keys` / `sealed_size` what the console may show (names and size, never content).
ALTER TABLE device_commands
    ADD COLUMN sealed      bytea,
    ADD COLUMN sealed_keys text[] NOT NULL DEFAULT '{}',
    ADD COLUMN sealed_size integer NOT NULL DEFAULT 0 CHECK (sealed_size >= 0);

-- The blob is needed only while the command may still be published (`pending`: a restarted
-- dispatcher publishes those again). Any move out of `pending` (sent, acknowledged, expired,
-- failed, revoked) drops it in the same statement, whichever code path makes the move.
CREATE FUNCTION device_commands_purge_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'pending' THEN
        NEW.sealed := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER device_commands_purge_sealed BEFORE INSERT OR UPDATE ON device_commands
    FOR EACH ROW EXECUTE FUNCTION device_commands_purge_sealed();

-- Rows written before sealing kept roster maps and templates in clear: keep only their names.
-- (A still-pending one is failed by the dispatcher: its arguments are gone.)
UPDATE device_commands
   SET sealed_keys = ARRAY(SELECT jsonb_object_keys(args) ORDER BY 1),
       sealed_size = octet_length(args::text),
       args = '{}'::jsonb
 WHERE name IN ('roster_sync', 'template_sync') AND args <> '{}'::jsonb;
-- Secrets pushed with config_push: the same key rule as schemas/_sealed.py (_SECRET_CONFIG_KEY).
UPDATE device_commands
   SET sealed_keys = secret.keys,
       sealed_size = secret.size,
       args = args - secret.keys
  FROM (SELECT id,
               ARRAY(SELECT k FROM jsonb_object_keys(args) AS k
                      WHERE k ~* '(^|[._-])(password|passwd|secret|token|key)s?$' ORDER BY 1) AS keys,
               octet_length(args::text) AS size
          FROM device_commands WHERE name = 'config_push') AS secret
 WHERE device_commands.id = secret.id AND cardinality(secret.keys) > 0;
