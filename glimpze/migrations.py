"""Schema history. Step N brings `PRAGMA user_version` from N-1 to N; steps are only ever appended.

Timestamps are REAL Unix seconds; JSON columns hold msgspec-encoded text.
"""

CORE = """
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    project_id           TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    hash                 TEXT NOT NULL UNIQUE,
    previous_hash        TEXT UNIQUE,        -- still valid until previous_expires_at (rotation grace)
    previous_expires_at  REAL,
    created_at           REAL NOT NULL,
    rotated_at           REAL,
    last_used_at         REAL
);
CREATE INDEX api_keys_project ON api_keys(project_id, created_at);

CREATE TABLE feeds (
    id                   TEXT PRIMARY KEY,
    project_id           TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    schema_type          TEXT NOT NULL,
    plan                 TEXT NOT NULL,
    write_key_hash       TEXT NOT NULL UNIQUE,
    write_key_prefix     TEXT NOT NULL,
    previous_key_hash    TEXT UNIQUE,
    previous_key_expires_at REAL,
    widget_event_seq     INTEGER,            -- the current widget state: events.seq
    minute_tokens        REAL,               -- token buckets, persisted with every event
    day_tokens           REAL,
    buckets_at           REAL,
    throttled_dropped    INTEGER NOT NULL DEFAULT 0,
    created_at           REAL NOT NULL,
    updated_at           REAL NOT NULL
);
CREATE INDEX feeds_project ON feeds(project_id, created_at);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,     -- arrival order; event-log cursors
    id              TEXT NOT NULL UNIQUE,
    feed_id         TEXT NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    status          TEXT NOT NULL,           -- accepted | throttled
    received_at     REAL NOT NULL,
    schema_type     TEXT NOT NULL,
    content         TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    intent          TEXT NOT NULL,
    callback        TEXT,
    widget_updated  INTEGER NOT NULL,
    push            TEXT NOT NULL
);
CREATE INDEX events_feed ON events(feed_id, seq);
CREATE INDEX events_received ON events(received_at);

-- Replays of Idempotency-Key requests: the first 2xx answer, kept 24 h.
CREATE TABLE idempotency (
    scope       TEXT NOT NULL,               -- the credential: a feed id or an API key id
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    BLOB NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency(created_at);
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("core: projects, keys, feeds, events, idempotency", CORE),
]
