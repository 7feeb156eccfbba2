-- Check-in network restriction (hub/db/checkin_networks.py, hub/domain/checkin_network.py,
-- docs/checkin.md): the client address ranges display-mode check-ins are expected from, for
-- the campus and, overriding it, per room. A check-in from outside is accepted and flagged
-- `outside_network` for review; one display code window used from many networks is flagged
-- `many_networks`.

-- The campus's ranges: one row (created empty here). An empty list means no restriction.
CREATE TABLE campus_checkin_networks (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    ranges     cidr[] NOT NULL DEFAULT '{}',
    updated_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO campus_checkin_networks (singleton) VALUES (true);

-- A room's own setting replaces the campus's (an empty list: this room is not restricted);
-- no row: the room follows the campus.
CREATE TABLE room_checkin_networks (
    room_id    text PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    ranges     cidr[] NOT NULL,
    updated_by text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What review needs of a display check-in's origin: the client's /24 (IPv4) or /48 (IPv6)
-- network, never the full address, and whether it was inside the restriction (NULL: none applied).
ALTER TABLE display_checkins ADD COLUMN network cidr,
                             ADD COLUMN network_inside boolean;

ALTER TABLE checkin_flags DROP CONSTRAINT checkin_flags_kind_check,
    ADD CONSTRAINT checkin_flags_kind_check CHECK (kind IN (
        'shared_device', 'wrong_room', 'token_reuse', 'clock_skew', 'outside_network', 'many_networks'));
