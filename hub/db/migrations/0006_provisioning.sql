-- Provisioning: per-device MQTT credentials, rotation and revocation,
-- the hub's own command-signing key, and hub -> device commands.

-- mqtt_username: the device's broker login (NULL: no broker account, e.g. devices seeded
-- before provisioning existed; they are left out of the generated password file).
-- mqtt_password_hash: Mosquitto's own PBKDF2-SHA512 format, "$7$<iterations>$<salt b64>$<hash b64>";
-- the password itself is shown once and never stored.
ALTER TABLE devices
    ADD COLUMN mqtt_username      text UNIQUE,
    ADD COLUMN mqtt_password_hash text
        CHECK (mqtt_password_hash IS NULL OR mqtt_password_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'),
    ADD COLUMN credential_version integer NOT NULL DEFAULT 1 CHECK (credential_version >= 1),
    ADD COLUMN registered_by      text,
    ADD COLUMN rotated_at         timestamptz,
    ADD COLUMN rotated_by         text,
    ADD COLUMN revoked_by         text,
    ADD COLUMN revoked_reason     text,
    ADD CONSTRAINT devices_mqtt_account CHECK ((mqtt_username IS NULL) = (mqtt_password_hash IS NULL));

-- The hub's Ed25519 key: it signs commands to ed25519 devices (which hold only their own
-- private key, so cannot verify anything the hub signs with theirs). Created once; its
-- public key is handed to every ed25519 device at provisioning.
CREATE TABLE hub_signing_keys (
    alg         text PRIMARY KEY CHECK (alg = 'ed25519'),
    private_key bytea NOT NULL CHECK (length(private_key) = 32),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Hub -> device commands. pending: recorded, not yet accepted by the broker; sent: the
-- broker took it (PUBACK), waiting for the device's ack until sent_at + ack_timeout_s;
-- acked/failed/expired/unsupported: the device's answer (expired also when it could not
-- reach the broker before expires_at); timed_out: no answer by the deadline.
CREATE TABLE device_commands (
    id            uuid PRIMARY KEY,
    -- Insertion order: commands created in the same clock tick still list newest first.
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    device_id     text NOT NULL REFERENCES devices (id),
    name          text NOT NULL
                  CHECK (name IN ('config_push', 'time_sync', 'reboot', 'roster_sync', 'template_sync')),
    args          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'acked', 'failed', 'expired', 'timed_out', 'unsupported')),
    ttl_s         integer NOT NULL CHECK (ttl_s BETWEEN 1 AND 86400),
    ack_timeout_s integer NOT NULL CHECK (ack_timeout_s BETWEEN 1 AND 172800),
    issued_by     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    expires_at    timestamptz NOT NULL,
    acked_at      timestamptz,
    detail        text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at)
);
CREATE INDEX device_commands_device ON device_commands (device_id, created_at DESC, seq DESC);
CREATE INDEX device_commands_outstanding ON device_commands (status) WHERE status IN ('pending', 'sent');
