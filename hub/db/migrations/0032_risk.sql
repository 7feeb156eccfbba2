-- Early warning (issue 16, docs/analytics.md): versioned at-risk models, the latest
-- prediction per student in each running course, and which high-risk crossings
-- the course's faculty were already told about.

-- One trained model. model: a joblib dump of a scikit-learn Pipeline written by
-- hub/services/risk_model.py; it is only ever loaded from this table, which only
-- the hub writes (unpickling runs code: never load a model from elsewhere).
-- metrics: the model's figures on the held-out term; baseline: the rule
-- "attendance below 75 %" on the same rows. shipped: it beat the rule (AUC and
-- precision at the top 10 %); ship_reason says why or why not. status: active is
-- the model in use (at most one), candidate a trained model not in use, retired
-- a model that was in use before. pinned: an admin chose it (rollback); a pinned
-- model stays in use until unpinned, whatever is trained after it.
CREATE TABLE risk_models (
    id           bigserial PRIMARY KEY,
    version      integer NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    trained_by   text NOT NULL,
    trained_on   text[] NOT NULL,
    tested_on    text NOT NULL,
    features     text[] NOT NULL,
    model        bytea NOT NULL,
    metrics      jsonb NOT NULL,
    baseline     jsonb NOT NULL,
    rows_trained integer NOT NULL,
    rows_tested  integer NOT NULL,
    status       text NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'retired')),
    pinned       boolean NOT NULL DEFAULT false,
    shipped      boolean NOT NULL,
    ship_reason  text NOT NULL,
    CHECK (NOT pinned OR shipped)
);
CREATE UNIQUE INDEX risk_models_one_active ON risk_models ((true)) WHERE status = 'active';
CREATE UNIQUE INDEX risk_models_one_pinned ON risk_models ((true)) WHERE pinned;

-- The latest risk of a student in a running course. basis 'model': probability
-- from model_id; basis 'rule': no shipped model, the level is the attendance
-- rule's (probability NULL). reasons: [{code, sentence, weight}], largest first;
-- actions: [{code, sentence, level_after, probability_after}] (what would lower
-- it, re-scored by the same model); features: the vector it was scored on.
CREATE TABLE risk_predictions (
    student_id  text NOT NULL REFERENCES students (id),
    course_id   text NOT NULL REFERENCES courses (id),
    term_id     text NOT NULL REFERENCES terms (id),
    model_id    bigint REFERENCES risk_models (id) ON DELETE SET NULL,
    basis       text NOT NULL CHECK (basis IN ('model', 'rule')),
    probability double precision CHECK (probability BETWEEN 0 AND 1),
    level       text NOT NULL CHECK (level IN ('low', 'medium', 'high')),
    reasons     jsonb NOT NULL DEFAULT '[]',
    actions     jsonb NOT NULL DEFAULT '[]',
    features    jsonb NOT NULL DEFAULT '{}',
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, course_id, term_id)
);
CREATE INDEX risk_predictions_course ON risk_predictions (course_id, term_id, level);

-- The course's faculty were notified that this student crossed into high risk;
-- the row is deleted when the student leaves high, so the next crossing notifies again.
CREATE TABLE risk_alerts (
    student_id  text NOT NULL REFERENCES students (id),
    course_id   text NOT NULL REFERENCES courses (id),
    term_id     text NOT NULL REFERENCES terms (id),
    crossed_at  timestamptz NOT NULL,
    PRIMARY KEY (student_id, course_id, term_id)
);

-- "Train now" from any hub process's web app: a request the trainer takes up (at once when the
-- risk actor runs in the same process, else at its next sweep). started_at/finished_at and note
-- say what became of it.
CREATE TABLE risk_training_requests (
    id           bigserial PRIMARY KEY,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    model_id     bigint REFERENCES risk_models (id) ON DELETE SET NULL,
    note         text NOT NULL DEFAULT ''
);
CREATE INDEX risk_training_requests_pending ON risk_training_requests (id) WHERE finished_at IS NULL;
