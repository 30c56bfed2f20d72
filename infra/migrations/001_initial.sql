-- The whole state of mentorflow. Every change to it happens in one transaction
-- together with the outbox rows it emits and the id of the event that caused it.

CREATE TABLE persons (
    person_id text PRIMARY KEY,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text NOT NULL CHECK (status IN ('active', 'terminated', 'deleted')),
    -- Last writer wins by (version_at, version_event_id).
    version_at timestamptz NOT NULL,
    version_event_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE programs (
    program_id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segments (
    segment_id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    definition jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rules (
    rule_id text PRIMARY KEY,
    action text NOT NULL CHECK (action IN ('add', 'remove')),
    program_id text NOT NULL REFERENCES programs ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('mentor', 'mentee')),
    segment_id text NOT NULL REFERENCES segments,
    position integer NOT NULL CHECK (position >= 0),
    status text NOT NULL CHECK (status IN ('published', 'paused', 'draft')),
    name text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Dashboard order must be total among the rules that run.
CREATE UNIQUE INDEX rules_published_position ON rules (position)
    WHERE status = 'published';

-- Bumped by every configuration change, so workers can cache the rule set.
CREATE TABLE config_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO config_version VALUES (true, 0);

CREATE TABLE memberships (
    program_id text NOT NULL,
    role text NOT NULL CHECK (role IN ('mentor', 'mentee')),
    person_id text NOT NULL,
    source text NOT NULL CHECK (source IN ('rule', 'manual')),
    decided_by text NOT NULL,
    cause_event_id text NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (program_id, role, person_id)
);
CREATE INDEX memberships_person ON memberships (person_id);

CREATE TABLE processed_events (
    event_id text PRIMARY KEY,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    outcome text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Person events whose effective date is still ahead, released on that date.
CREATE TABLE held_events (
    event_id text PRIMARY KEY,
    person_id text NOT NULL,
    due_on date NOT NULL,
    event jsonb NOT NULL,
    held_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_events_due ON held_events (due_on);

-- The transactional outbox: the relay publishes rows in id order, then
-- deletes them.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    key text,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    subject text NOT NULL,
    cause_event_id text,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_subject ON audit_log (subject);

CREATE TABLE sweeps (
    id bigserial PRIMARY KEY,
    cause_event_id text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    persons integer NOT NULL DEFAULT 0,
    changes integer NOT NULL DEFAULT 0
);
