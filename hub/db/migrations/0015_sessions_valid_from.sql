-- Sessions end with a password reset or change (issue 11): access tokens issued (iat) before this
-- whole second are refused (web/protection.py); see hub/db/accounts.py _NEW_SESSIONS_FROM. NULL: none.
ALTER TABLE users ADD COLUMN sessions_valid_from timestamptz;
