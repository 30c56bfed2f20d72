-- Compiled segments (rules/sql.py) add containment tests on the search copy
-- for their equality, membership and list conditions; this index answers
-- them, so a sweep reads the candidates of such a segment instead of every
-- person.
CREATE INDEX persons_search_paths ON persons USING gin (search jsonb_path_ops);
