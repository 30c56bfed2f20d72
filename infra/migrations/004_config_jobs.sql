-- Re-evaluations that configuration changes started: worked through one chunk
-- of persons a transaction, resumed after a crash from the last person done.
CREATE TABLE reevaluations (
    cause_event_id text PRIMARY KEY,
    pairs jsonb NOT NULL,
    after_person_id text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Configuration changes held because they would remove too many members,
-- until an admin confirms them.
CREATE TABLE held_configs (
    event_id text PRIMARY KEY,
    event jsonb NOT NULL,
    report jsonb NOT NULL,
    held_at timestamptz NOT NULL DEFAULT now()
);
