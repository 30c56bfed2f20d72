-- The configuration version a change was held at: confirming it once the
-- configuration has changed since is refused, because its blast radius was
-- counted on another rule set and applying it would overwrite the newer
-- change. NULL for changes held before this column existed: those are
-- confirmed as before.
ALTER TABLE held_configs ADD COLUMN config_version bigint;
