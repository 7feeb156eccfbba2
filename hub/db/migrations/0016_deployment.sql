-- The deployment's identity (issue 12 §1): one row, created by the first hub that starts on this
-- database (hub/db/deployment.py), never by this migration: a database cloned from a migrated
-- template (tests) or restored before its first start gets an identity of its own.
-- The hub's default MQTT client id is derived from it, so two deployments sharing a broker never
-- share a persistent session by default.
CREATE TABLE deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
