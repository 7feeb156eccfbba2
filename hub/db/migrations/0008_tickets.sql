-- Maintenance tickets (ops console): SLA policy per priority, tickets, their comments and history.
-- Rules live in hub/domain/tickets.py; this schema only guards what must never be stored.

-- How long a ticket of each priority may take to be resolved, and how long its alarm must stay
-- clear before it closes by itself (NULL: tickets of that priority never close by themselves).
CREATE TABLE ticket_sla_policy (
    priority           text PRIMARY KEY CHECK (priority IN ('P0', 'P1', 'P2', 'P3', 'P4')),
    resolve_within_s   integer NOT NULL CHECK (resolve_within_s > 0),
    auto_close_after_s integer CHECK (auto_close_after_s >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    updated_by         text
);
INSERT INTO ticket_sla_policy (priority, resolve_within_s, auto_close_after_s) VALUES
    ('P0', 4 * 3600, 1800),
    ('P1', 24 * 3600, 1800),
    ('P2', 3 * 86400, 1800),
    ('P3', 7 * 86400, 1800),
    ('P4', 14 * 86400, 1800);

-- One row: which alarm severities make the hub raise a ticket by itself.
CREATE TABLE ticket_settings (
    id                    boolean PRIMARY KEY DEFAULT true CHECK (id),
    auto_raise_severities text[] NOT NULL DEFAULT '{critical}'
                          CHECK (auto_raise_severities <@ ARRAY['critical', 'major', 'minor', 'warning']),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    updated_by            text
);
INSERT INTO ticket_settings DEFAULT VALUES;

CREATE TABLE tickets (
    id                 bigserial PRIMARY KEY,
    room_id            text REFERENCES rooms (id),
    device_id          text REFERENCES devices (id),
    alarm_id           bigint REFERENCES alarms (id),
    -- The (device_id, alarm_type) whose latest alarm the auto-close rule watches (a re-raise is a new alarm).
    alarm_type         text,
    title              text NOT NULL CHECK (title <> '' AND length(title) <= 200),
    description        text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    priority           text NOT NULL CHECK (priority IN ('P0', 'P1', 'P2', 'P3', 'P4')),
    state              text NOT NULL DEFAULT 'open'
                       CHECK (state IN ('open', 'assigned', 'in_progress', 'resolved', 'closed')),
    source             text NOT NULL CHECK (source IN ('report', 'alarm', 'auto')),
    assignee           text REFERENCES users (id),
    reported_by        text REFERENCES users (id),  -- NULL: raised by the hub
    sla_due_at         timestamptz NOT NULL,
    sla_breached_at    timestamptz,                 -- set once, when the hub announced the breach
    auto_close_after_s integer CHECK (auto_close_after_s >= 0),  -- NULL: never closes by itself
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    closed_at          timestamptz,
    close_reason       text NOT NULL DEFAULT '',
    CHECK (room_id IS NOT NULL OR device_id IS NOT NULL),
    CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
    CHECK (state NOT IN ('assigned', 'in_progress') OR assignee IS NOT NULL),
    CHECK (alarm_id IS NULL OR (device_id IS NOT NULL AND alarm_type IS NOT NULL))
);
-- One live ticket per alarm: raising twice (two operators, or an operator and the hub) conflicts.
CREATE UNIQUE INDEX tickets_one_live_per_alarm ON tickets (alarm_id) WHERE alarm_id IS NOT NULL AND state <> 'closed';
CREATE INDEX tickets_board ON tickets (state, priority, created_at);
CREATE INDEX tickets_watch ON tickets (device_id, alarm_type) WHERE state <> 'closed' AND alarm_type IS NOT NULL;
CREATE INDEX tickets_reported_by ON tickets (reported_by, created_at);
CREATE INDEX tickets_room ON tickets (room_id);

CREATE TABLE ticket_comments (
    id         bigserial PRIMARY KEY,
    ticket_id  bigint NOT NULL REFERENCES tickets (id),
    author     text NOT NULL REFERENCES users (id),
    body       text NOT NULL CHECK (body <> '' AND length(body) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, id);

-- Append-only history: created, assigned, moves, priority changes, SLA breach, auto-close.
CREATE TABLE ticket_events (
    id         bigserial PRIMARY KEY,
    ticket_id  bigint NOT NULL REFERENCES tickets (id),
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,  -- a user id, or 'system' for the hub
    kind       text NOT NULL,
    from_state text,
    to_state   text,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);
