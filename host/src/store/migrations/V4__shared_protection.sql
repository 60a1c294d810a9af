-- The SMS-pumping protection shared by the hosts of one database (host/src/protection/
-- shared_state.rs): the blocks (one per kind, subject and reason; the first host's wins),
-- the countries verified or allowed, and each host's counts as one row per exchange,
-- numbered per host (a host applies another's rows once, by number: no gap from commit
-- order), purged once a snapshot counts them or past the longest window.
CREATE TABLE protection_blocks (
    id text PRIMARY KEY,
    kind text NOT NULL,
    subject text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    since bigint NOT NULL,
    until bigint,
    blocked bigint NOT NULL DEFAULT 0,
    UNIQUE (kind, subject, reason)
);

CREATE TABLE protection_countries (
    region text NOT NULL,
    -- true: an admin allowed it; false: a code there was verified.
    allowed boolean NOT NULL,
    PRIMARY KEY (region, allowed)
);

CREATE TABLE protection_events (
    host_id text NOT NULL,
    seq bigint NOT NULL,
    -- The database's clock when written (ms): rows are read by it, whatever the hosts' clocks.
    at bigint NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (host_id, seq)
);
CREATE INDEX protection_events_at ON protection_events (at);

-- The whole counting state as one host knew it, about every minute, and the last row of each
-- host it counts: a host that starts restores it and replays only the rows after it.
CREATE TABLE protection_snapshot (
    id integer PRIMARY KEY CHECK (id = 1),
    host_id text NOT NULL,
    taken_at bigint NOT NULL,
    applied jsonb NOT NULL,
    body jsonb NOT NULL
);
