-- The next day on which a person's time-relative segment outcomes can change:
-- a durable timer, so that flips missed while no worker ran are applied on
-- start.
CREATE TABLE person_timers (
    person_id text PRIMARY KEY,
    due_on date NOT NULL
);
CREATE INDEX person_timers_due ON person_timers (due_on);
