-- The sweep now reads every active person in one pass and evaluates all
-- segments per row (rules/sql.py), so the containment index that answered the
-- per-segment candidate queries is no longer read; dropping it spares every
-- person write its upkeep.
DROP INDEX IF EXISTS persons_search_paths;

-- What the sweep reads besides the active persons: those who left, whose
-- memberships it removes, and those whose search copy is still to compute.
CREATE INDEX persons_departed ON persons (person_id) WHERE status <> 'active';
CREATE INDEX persons_search_missing ON persons (person_id) WHERE search IS NULL;
