-- rules/text.py now drops zero-width characters before NFKC, not after, and
-- composes the text again after case folding, so a search copy saved before
-- may hold another text than the Python evaluation reads for the same value.
-- Texts of ASCII characters only normalise exactly as before. NULL means not
-- computed yet: the next sweep recomputes these copies before it reads any
-- person (infra/sweep.py fill_search), and saving a person recomputes its own.
UPDATE persons SET search = NULL
WHERE search IS NOT NULL AND attributes::text ~ '[^[:ascii:]]';
