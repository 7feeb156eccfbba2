-- Secrets encrypted at rest (issue 14 §3): every secret column gets a sealed twin holding an
-- AES-256-GCM blob under the campus key (hub/core/secrets_box.py: version, key id, nonce,
-- ciphertext + tag; bound to its row by a context). SQL has no key, so it cannot seal the rows
-- already here: the hub does, once, at start and in `campushub migrate`
-- (hub/db/sealed_secrets.py, seal_pending), and then sets the plaintext column NULL. From then
-- on only the sealed column is written. Each row holds a secret in at most one form.

-- Device HMAC keys. Ed25519 devices keep their public key (not a secret) in `key`.
ALTER TABLE devices
    ALTER COLUMN key DROP NOT NULL,
    ADD COLUMN key_sealed bytea CHECK (octet_length(key_sealed) <= 256),
    ADD CONSTRAINT devices_key_stored_once CHECK (
        CASE WHEN alg = 'ed25519' THEN key IS NOT NULL AND key_sealed IS NULL
             ELSE (key IS NULL) <> (key_sealed IS NULL) END);

-- Students' check-in token secrets (sign their rotating QR). Both NULL: no token secret (erased).
ALTER TABLE students
    ALTER COLUMN token_secret DROP NOT NULL,
    ADD COLUMN token_secret_sealed bytea CHECK (octet_length(token_secret_sealed) <= 256),
    ADD CONSTRAINT students_token_secret_stored_once CHECK (token_secret IS NULL OR token_secret_sealed IS NULL);

-- Webhook signing secrets (text; sealed as their UTF-8 bytes).
ALTER TABLE webhook_subscriptions
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_sealed bytea CHECK (octet_length(secret_sealed) <= 1024),
    ADD CONSTRAINT webhook_subscriptions_secret_stored_once CHECK ((secret IS NULL) <> (secret_sealed IS NULL));

-- Leave documents (up to 5 MiB; the blob is the document + 30 bytes). size_bytes and sha256
-- stay in the clear: they describe the document without revealing it.
ALTER TABLE leave_documents
    ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN data_sealed bytea CHECK (octet_length(data_sealed) = size_bytes + 30),
    ADD CONSTRAINT leave_documents_data_stored_once CHECK ((data IS NULL) <> (data_sealed IS NULL));
-- Ciphertext does not compress: store it out of line as it is, so reading a blob's key id (its
-- second byte, `campushub keys status` / rotate) fetches a slice, not the whole document.
ALTER TABLE leave_documents ALTER COLUMN data_sealed SET STORAGE EXTERNAL;

-- The hub's Ed25519 command-signing private key (its public key is not a secret).
ALTER TABLE hub_signing_keys
    ALTER COLUMN private_key DROP NOT NULL,
    ADD COLUMN private_key_sealed bytea CHECK (octet_length(private_key_sealed) = 32 + 30),
    ADD CONSTRAINT hub_signing_keys_private_key_stored_once
        CHECK ((private_key IS NULL) <> (private_key_sealed IS NULL));
