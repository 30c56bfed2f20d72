-- The last lifecycle event (hire, termination, deletion) applied to a person,
-- which a termination or deletion must be newer than to apply: an attribute
-- update written after a termination must not make that termination stale.
-- NULL when no lifecycle event is known (a person known from snapshots only).
-- Records written before this column existed get their record version, which
-- is what lifecycle events were compared with until then.
ALTER TABLE persons ADD COLUMN lifecycle_at timestamptz,
    ADD COLUMN lifecycle_event_id text;
UPDATE persons SET lifecycle_at = version_at, lifecycle_event_id = version_event_id;
