-- The set-based sweep: segments compiled to SQL (rules/sql.py) read a search
-- copy of each person's attributes that Python computes when it saves the
-- person (rules/search.py). NULL means not computed yet: the sweep computes it
-- before it reads any person.
ALTER TABLE persons ADD COLUMN search jsonb;

-- Declared aliases of a segment, variant -> canonical (rules/aliases.py).
ALTER TABLE segments ADD COLUMN aliases jsonb NOT NULL DEFAULT '{}'::jsonb;

-- The SQL twin of rules.aliases.Aliases.apply: the same words, the same order
-- of trying the variants, the same single pass. Both arguments come from
-- Aliases.variants and Aliases.canonicals.
CREATE FUNCTION mentorflow_apply_aliases(
    source text, variants text[], canonicals text[]
) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    words text[];
    variant text[];
    result text[] := '{}';
    at integer := 1;
    matched boolean;
BEGIN
    IF source = '' OR cardinality(variants) = 0 THEN
        RETURN source;
    END IF;
    words := string_to_array(source, ' ');
    WHILE at <= cardinality(words) LOOP
        matched := false;
        FOR k IN 1 .. cardinality(variants) LOOP
            variant := string_to_array(variants[k], ' ');
            IF words[at:at + cardinality(variant) - 1] = variant THEN
                result := result || canonicals[k];
                at := at + cardinality(variant);
                matched := true;
                EXIT;
            END IF;
        END LOOP;
        IF NOT matched THEN
            result := result || words[at];
            at := at + 1;
        END IF;
    END LOOP;
    RETURN array_to_string(result, ' ');
END
$$;

-- The SQL twin of schemas.common.derive_event_id: a version 8 UUID (RFC 9562)
-- made of the first 16 bytes of SHA-256(namespace || UTF-8 name).
CREATE FUNCTION mentorflow_event_id(namespace bytea, name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(
        set_byte(
            set_byte(digest, 6, (get_byte(digest, 6) & 15) | 128),
            8,
            (get_byte(digest, 8) & 63) | 128
        ),
        'hex'
    )::uuid::text
    FROM (
        SELECT substring(sha256(namespace || convert_to(name, 'UTF8')) FROM 1 FOR 16)
    ) AS hashed (digest)
$$;
