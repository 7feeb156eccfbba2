-- Insights: notifications, webhooks (subscriptions + delivery outbox),
-- condonation applications, and the per-(student, course) warning state.

-- In-app notifications; read_at NULL = unread.
CREATE TABLE notifications (
    id         bigserial PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id),
    kind       text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    link       text,
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
CREATE INDEX notifications_user ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- Integrations: every notification whose kind matches (empty kinds = every kind) is
-- queued for each active subscription in the same transaction that creates it.
CREATE TABLE webhook_subscriptions (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    secret      text NOT NULL CHECK (length(secret) >= 16),
    kinds       text[] NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text REFERENCES users (id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The outbox: the dispatcher delivers rows whose next_attempt_at has passed; state
-- 'failed' means it gave up after the maximum number of attempts.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    kind            text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id DESC);

-- A student below the eligibility line asks for condonation; the course's faculty
-- (or an admin) decides. At most one pending or approved application per course.
CREATE TABLE condonation_applications (
    id            bigserial PRIMARY KEY,
    student_id    text NOT NULL REFERENCES students (id),
    course_id     text NOT NULL REFERENCES courses (id),
    reason        text NOT NULL,
    percentage    numeric(6, 2) NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    decided_at    timestamptz,
    decided_by    text REFERENCES users (id),
    decision_note text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX condonation_one_open ON condonation_applications (student_id, course_id)
    WHERE state IN ('pending', 'approved');
CREATE INDEX condonation_course ON condonation_applications (course_id, state);

-- Whether a student was last seen below the course's warning line, so a warning is
-- sent once per downward crossing rather than on every change.
CREATE TABLE attendance_warnings (
    student_id text NOT NULL REFERENCES students (id),
    course_id  text NOT NULL REFERENCES courses (id),
    below      boolean NOT NULL,
    percentage numeric(6, 2),
    changed_at timestamptz NOT NULL DEFAULT now(),
    warned_at  timestamptz,
    PRIMARY KEY (student_id, course_id)
);

-- The warnings actor's safety-net sweep finds attendance written since its last sweep.
CREATE INDEX attendance_updated_at ON attendance (updated_at);
