-- Accounts (issue 11): one-time codes for activation and admin resets, and the forced change at next login.

-- The user must choose a new password before anything else (set by an admin's reset, cleared by a change).
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;

-- A one-time code lets its holder set the password of one account once. Only its SHA-256 is kept
-- (the code has 100+ random bits, so a fast hash is enough; the plain code is shown once to the admin).
-- Issuing a new code for a user revokes (used_at) the earlier unused ones.
CREATE TABLE one_time_codes (
    code_hash  bytea PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('activation', 'reset')),
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX one_time_codes_live ON one_time_codes (user_id) WHERE used_at IS NULL;
