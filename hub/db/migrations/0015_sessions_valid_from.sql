-- Sessions end with a password reset or change (issue 11): access tokens issued before this
-- instant are refused (web/protection.py compares it with the token's iat). NULL: no cutoff.
ALTER TABLE users ADD COLUMN sessions_valid_from timestamptz;
