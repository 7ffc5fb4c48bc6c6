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
    widget_event_seq     INTEGER,            -- the current widget state: events.seq (trigger below)
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
    push            TEXT NOT NULL,
    minute_tokens   REAL,                    -- the feed's token buckets right after this accepted
    day_tokens      REAL                     -- event: the newest one is the quota snapshot
);
CREATE INDEX events_feed ON events(feed_id, seq);
CREATE INDEX events_received ON events(received_at);

CREATE TRIGGER events_widget AFTER INSERT ON events WHEN NEW.widget_updated BEGIN
    UPDATE feeds SET widget_event_seq = NEW.seq WHERE id = NEW.feed_id;
END;

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

WEBHOOKS = """
-- Outgoing events: the exact payload sent, kept for long polling and replay.
CREATE TABLE out_events (
    seq          INTEGER PRIMARY KEY,        -- long-poll cursor order
    id           TEXT NOT NULL UNIQUE,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    occurred_at  REAL NOT NULL,
    payload      BLOB NOT NULL
);
CREATE INDEX out_events_project ON out_events(project_id, seq);
CREATE INDEX out_events_time ON out_events(occurred_at);

CREATE TABLE webhooks (
    id                          TEXT PRIMARY KEY,
    project_id                  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    events                      TEXT NOT NULL,           -- JSON array of types, or ["*"]
    description                 TEXT NOT NULL DEFAULT '',
    headers                     TEXT NOT NULL DEFAULT '{}',
    active                      INTEGER NOT NULL DEFAULT 1,
    ordered                     INTEGER NOT NULL DEFAULT 0,
    timeout_seconds             REAL NOT NULL,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,                    -- also signs until previous_secret_expires_at
    previous_secret_expires_at  REAL,
    failures                    INTEGER NOT NULL DEFAULT 0,  -- consecutive failed attempts
    failing_since               REAL,                    -- first failure of the current streak
    warned_at                   REAL,                    -- webhook.failing sent for this streak
    disabled_reason             TEXT,
    created_at                  REAL NOT NULL,
    updated_at                  REAL NOT NULL
);
CREATE INDEX webhooks_project ON webhooks(project_id, created_at);

CREATE TABLE deliveries (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    webhook_id        TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_seq         INTEGER NOT NULL REFERENCES out_events(seq) ON DELETE CASCADE,
    status            TEXT NOT NULL,              -- pending | failed | delivered | dead
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   REAL,                       -- due time while pending or failed
    lease_until       REAL,                       -- a dispatcher is sending it until then
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status IN ('pending', 'failed');

-- The outbox guarantee, in the schema: an outgoing event queues one delivery per active webhook
-- of its project that takes its type, in the same transaction.
CREATE TRIGGER out_events_queue AFTER INSERT ON out_events BEGIN
    INSERT INTO deliveries (id, webhook_id, event_seq, status, attempts, next_attempt_at, created_at, updated_at)
    SELECT 'dlv_' || lower(hex(randomblob(10))), w.id, NEW.seq, 'pending', 0, NEW.occurred_at,
           NEW.occurred_at, NEW.occurred_at
    FROM webhooks w
    WHERE w.project_id = NEW.project_id AND w.active
      AND EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN (NEW.type, '*'));
END;
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, seq);
CREATE INDEX deliveries_event ON deliveries(event_seq);

CREATE TABLE delivery_attempts (
    delivery_seq   INTEGER NOT NULL REFERENCES deliveries(seq) ON DELETE CASCADE,
    attempt        INTEGER NOT NULL,
    at             REAL NOT NULL,
    status_code    INTEGER,
    latency_ms     REAL,
    error          TEXT,
    response_head  TEXT,                          -- the first bytes of the answer
    PRIMARY KEY (delivery_seq, attempt)
) WITHOUT ROWID;
"""

CONVERSATIONS = """
-- Per-project settings (widget origins, the widget-token secret), one JSON value per name.
CREATE TABLE project_settings (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (project_id, name)
) WITHOUT ROWID;

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    language    TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX agents_project ON agents(project_id, created_at);

CREATE TABLE sessions (
    seq            INTEGER PRIMARY KEY,      -- creation order; list cursors
    id             TEXT NOT NULL UNIQUE,
    project_id     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_id       TEXT,
    visitor_id     TEXT NOT NULL,
    visitor_name   TEXT,
    visitor_email  TEXT,
    status         TEXT NOT NULL,            -- open | pending | snoozed | closed
    snoozed_until  REAL,
    priority       TEXT NOT NULL,            -- low | normal | high | urgent
    team           TEXT,
    assignee       TEXT,
    labels         TEXT NOT NULL DEFAULT '[]',
    page_url       TEXT,
    language       TEXT,
    context        TEXT NOT NULL DEFAULT '{}',
    resolution     TEXT,
    closed_at      REAL,
    stream_seq     INTEGER NOT NULL DEFAULT 0,  -- the last SSE id handed out (session_stream.seq)
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
);
CREATE INDEX sessions_project ON sessions(project_id, seq);
CREATE INDEX sessions_visitor ON sessions(project_id, visitor_id, seq);
CREATE INDEX sessions_snoozed ON sessions(snoozed_until) WHERE status = 'snoozed';

-- What a visitor's SSE stream replays: message, done and session events, numbered per session.
CREATE TABLE session_stream (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,            -- its session_stream seq
    role        TEXT NOT NULL,               -- visitor | agent | assistant
    text        TEXT NOT NULL,
    author      TEXT,
    created_at  REAL NOT NULL,
    UNIQUE (session_id, seq)
);

CREATE TABLE session_notes (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    author      TEXT,
    text        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX session_notes_session ON session_notes(session_id, seq);

CREATE TABLE session_handoffs (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    session_id     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    from_team      TEXT,
    from_assignee  TEXT,
    to_team        TEXT NOT NULL,
    to_assignee    TEXT,
    reason         TEXT NOT NULL,
    created_at     REAL NOT NULL
);
CREATE INDEX session_handoffs_session ON session_handoffs(session_id, seq);

CREATE TABLE leads (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    project_id     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_id       TEXT,
    session_id     TEXT,
    fields         TEXT NOT NULL,            -- {"name", "email", "phone", ...custom}
    intent         TEXT NOT NULL DEFAULT '{}',
    email_key      TEXT,                     -- lower-cased email: the first upsert match
    phone_key      TEXT,                     -- digits (and a leading +): the second
    crm_system     TEXT,
    crm_record_id  TEXT,
    captures       INTEGER NOT NULL DEFAULT 1,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
);
CREATE INDEX leads_email ON leads(project_id, email_key) WHERE email_key IS NOT NULL;
CREATE INDEX leads_phone ON leads(project_id, phone_key) WHERE phone_key IS NOT NULL;
CREATE INDEX leads_updated ON leads(project_id, updated_at, seq);
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("core: projects, keys, feeds, events, idempotency", CORE),
    ("webhooks: outgoing events, webhooks, deliveries, attempts", WEBHOOKS),
    ("conversations: settings, agents, sessions, messages, notes, handoffs, leads", CONVERSATIONS),
]
