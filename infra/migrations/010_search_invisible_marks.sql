-- rules/text.py now also drops the marks and embeddings that set text direction
-- (U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) and the Mongolian vowel
-- separator (U+180E), and rules/values.py no longer reads digits grouped by
-- underscores ("1_000") as a number, so a search copy saved before may hold
-- another text or number than the Python evaluation reads for such a value.
-- NULL means not computed yet: the next sweep recomputes these copies before it
-- reads any person (infra/sweep.py fill_search), and saving a person recomputes
-- its own. The patterns also catch names and other values that are unaffected;
-- recomputing those changes nothing.
UPDATE persons SET search = NULL
WHERE search IS NOT NULL
    AND (
        attributes::text ~ '[\u200e\u200f\u202a-\u202e\u2066-\u2069\u180e]'
        OR attributes::text ~ '[0-9]_[0-9]'
    );
