-- Two-factor authentication (TOTP) and one-time recovery codes: web/auth.py, hub/db/mfa.py.
-- The TOTP seed is stored sealed by hub/core/secrets_box.py (AES-256-GCM, key outside the
-- database), never in plaintext. A row with confirmed_at NULL is an enrolment begun but not
-- yet confirmed with a code: it does not count as MFA.
CREATE TABLE user_mfa (
    user_id       text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed bytea NOT NULL CHECK (octet_length(secret_sealed) <= 256),
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    -- The last TOTP time step accepted: a code of that step or an earlier one is a replay.
    last_step     bigint NOT NULL DEFAULT 0,
    -- Wrong codes at the second login step since failed_since (a brute-force bound).
    failed_codes  integer NOT NULL DEFAULT 0,
    failed_since  timestamptz
);

-- Recovery codes are random (50 bits), so a SHA-256 is enough; each works once.
CREATE TABLE mfa_recovery_codes (
    user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
