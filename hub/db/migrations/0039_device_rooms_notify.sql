-- Several hub workers (issue 13 part 2; hub/db/pg_listen.py DEVICE_ROOMS_CHANNEL): a device
-- registered, moved to another room, revoked or deleted changes which partition session must
-- subscribe its topics. The partition keepers re-read the devices' rooms when they hear this,
-- instead of at their next round (a third of the lease): a new device's first messages would
-- otherwise find no subscriber, and the broker drops a message nobody subscribes to.
-- One notification per statement (a bulk import announces itself once); the payload is empty:
-- the listeners re-read the whole, light, device-room list.
CREATE FUNCTION notify_device_rooms() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('campushub_device_rooms', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER devices_rooms_notify AFTER INSERT OR DELETE OR UPDATE OF room_id, revoked_at ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION notify_device_rooms();
