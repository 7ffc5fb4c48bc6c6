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
    payload      BLOB NOT NULL,
    target_webhook_id TEXT                   -- webhook.test: for this webhook only
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
    event_seq         INTEGER NOT NULL,           -- out_events.seq; kept while the delivery is open (outbox.purge)
    ordered           INTEGER NOT NULL DEFAULT 0, -- the webhook's, copied: only these are in deliveries_head
    status            TEXT NOT NULL,              -- pending | failed | delivered | dead
    attempts          INTEGER NOT NULL DEFAULT 0,
    schedule_base     INTEGER NOT NULL DEFAULT 0, -- attempts made before the last replay
    next_attempt_at   REAL,                       -- due time while pending or failed
    lease_until       REAL,                       -- a dispatcher is sending it until then
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(webhook_id, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_head ON deliveries(webhook_id, seq) WHERE ordered AND status IN ('pending', 'failed');

-- Deliveries are indexed as little as the dispatcher allows: each index costs every event a
-- webhook takes (measured as the largest part of ingest with an active webhook).

-- The outbox guarantee, in the schema: an outgoing event queues one delivery per active webhook
-- of its project that takes its type, in the same transaction.
CREATE TRIGGER out_events_queue AFTER INSERT ON out_events BEGIN
    INSERT INTO deliveries (id, webhook_id, event_seq, ordered, status, attempts, next_attempt_at, created_at,
                            updated_at)
    -- ids grow with the event's seq, so their index is appended to (see ids.new_id)
    SELECT 'dlv_' || printf('%010x', NEW.seq) || lower(hex(randomblob(5))), w.id, NEW.seq, w.ordered, 'pending', 0,
           NEW.occurred_at, NEW.occurred_at, NEW.occurred_at
    FROM webhooks w
    WHERE w.project_id = NEW.project_id AND w.active
      AND CASE WHEN NEW.target_webhook_id IS NULL
               THEN EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN (NEW.type, '*'))
               ELSE w.id = NEW.target_webhook_id END;
END;
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, seq);

-- Small facts about the whole database, e.g. the newest outgoing event retention has purged.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  ANY
) WITHOUT ROWID;

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

IMAGES = """
-- Widget readers: a per-feed read token (stored as is: devices must be shown it again).
ALTER TABLE feeds ADD COLUMN read_token TEXT NOT NULL DEFAULT '';
UPDATE feeds SET read_token = 'gzr_' || lower(hex(randomblob(20)));

-- Uploaded images, content-addressed: the file is media/{sha256}.{ext} under the data dir.
CREATE TABLE media (
    sha256        TEXT PRIMARY KEY,
    ext           TEXT NOT NULL,             -- png | jpg | webp
    content_type  TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    created_at    REAL NOT NULL
) WITHOUT ROWID;

-- Which stored images an event's content links to, per slot (small, small_dark, medium, …).
-- Purging an event drops its references; an image nobody references is then deleted (media.py).
CREATE TABLE event_media (
    event_seq  INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    slot       TEXT NOT NULL,
    sha256     TEXT NOT NULL REFERENCES media(sha256),
    PRIMARY KEY (event_seq, slot)
) WITHOUT ROWID;
CREATE INDEX event_media_sha256 ON event_media(sha256);
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

CTAS = """
-- An agent's call-to-action rules. Matching reads an agent's active rules by descending
-- priority, ties in creation order (seq); `match` and `forward_context` are JSON.
CREATE TABLE cta_rules (
    seq              INTEGER PRIMARY KEY,      -- creation order: breaks priority ties; list cursors
    id               TEXT NOT NULL UNIQUE,
    project_id       TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    agent_id         TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    label            TEXT NOT NULL,
    description      TEXT,
    url              TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    active           INTEGER NOT NULL,
    match            TEXT NOT NULL,            -- {"page_url", "languages", "keywords", "pattern"}
    forward_context  TEXT NOT NULL,            -- ["conversation_id", "visitor_email", ...]
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX cta_rules_agent ON cta_rules(agent_id, priority DESC, seq);

-- A signed card forwards the fields of the lead last captured in its session.
CREATE INDEX leads_session ON leads(session_id, updated_at) WHERE session_id IS NOT NULL;
"""

APPROVALS = """
-- Approval callbacks go through the webhook delivery engine: a delivery targets either a webhook
-- (webhook_id) or, with webhook_id NULL, the callback of an approval feed (feed_id, method, url,
-- payload; signed with the feed's callback secret). SQLite cannot make a column nullable in place,
-- so deliveries is rebuilt (its attempts copied aside first: dropping deliveries cascades to them).
ALTER TABLE feeds ADD COLUMN callback_secret TEXT;                 -- whsec_…, approval feeds only
ALTER TABLE feeds ADD COLUMN previous_callback_secret TEXT;        -- also signs until …_expires_at
ALTER TABLE feeds ADD COLUMN previous_callback_secret_expires_at REAL;

CREATE TABLE deliveries_new (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    webhook_id        TEXT REFERENCES webhooks(id) ON DELETE CASCADE,  -- NULL: an approval callback
    event_seq         INTEGER NOT NULL,           -- out_events.seq; kept while the delivery is open (outbox.purge)
    ordered           INTEGER NOT NULL DEFAULT 0, -- the webhook's, copied: only these are in deliveries_head
    status            TEXT NOT NULL,              -- pending | failed | delivered | dead
    attempts          INTEGER NOT NULL DEFAULT 0,
    schedule_base     INTEGER NOT NULL DEFAULT 0, -- attempts made before the last replay
    next_attempt_at   REAL,                       -- due time while pending or failed
    lease_until       REAL,                       -- a dispatcher is sending it until then
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    -- An approval callback (callbacks.py): the request itself, fixed when the action was taken.
    feed_id           TEXT REFERENCES feeds(id) ON DELETE CASCADE,
    method            TEXT,                       -- POST | PUT | GET
    url               TEXT,                       -- for GET with the fields in its query string
    payload           BLOB,                       -- the body (seed 002's); NULL for GET
    CHECK ((webhook_id IS NULL) = (feed_id IS NOT NULL))
);
INSERT INTO deliveries_new (seq, id, webhook_id, event_seq, ordered, status, attempts, schedule_base,
                            next_attempt_at, lease_until, last_status_code, last_error, created_at, updated_at)
SELECT seq, id, webhook_id, event_seq, ordered, status, attempts, schedule_base, next_attempt_at, lease_until,
       last_status_code, last_error, created_at, updated_at FROM deliveries;
CREATE TABLE delivery_attempts_copy AS SELECT * FROM delivery_attempts;
DROP TRIGGER out_events_queue;
DROP TABLE delivery_attempts;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;

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
INSERT INTO delivery_attempts SELECT * FROM delivery_attempts_copy;
DROP TABLE delivery_attempts_copy;

-- The webhook indexes as before (each one costs every event a webhook takes). Callbacks have their
-- own partial index, which webhook deliveries (feed_id NULL) never enter: it finds due callbacks and
-- serves the feed foreign key.
CREATE INDEX deliveries_due ON deliveries(webhook_id, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_head ON deliveries(webhook_id, seq) WHERE ordered AND status IN ('pending', 'failed');
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, seq);
CREATE INDEX deliveries_callbacks ON deliveries(feed_id, next_attempt_at) WHERE feed_id IS NOT NULL;

CREATE TRIGGER out_events_queue AFTER INSERT ON out_events BEGIN
    INSERT INTO deliveries (id, webhook_id, event_seq, ordered, status, attempts, next_attempt_at, created_at,
                            updated_at)
    -- ids grow with the event's seq, so their index is appended to (see ids.new_id)
    SELECT 'dlv_' || printf('%010x', NEW.seq) || lower(hex(randomblob(5))), w.id, NEW.seq, w.ordered, 'pending', 0,
           NEW.occurred_at, NEW.occurred_at, NEW.occurred_at
    FROM webhooks w
    WHERE w.project_id = NEW.project_id AND w.active
      AND CASE WHEN NEW.target_webhook_id IS NULL
               THEN EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN (NEW.type, '*'))
               ELSE w.id = NEW.target_webhook_id END;
END;

-- An approval event's lifecycle: pending until approved or rejected; a defer keeps it pending and
-- sets renotify_at. Retention never deletes the event of a pending approval.
CREATE TABLE approvals (
    event_seq     INTEGER PRIMARY KEY REFERENCES events(seq) ON DELETE CASCADE,
    event_id      TEXT NOT NULL UNIQUE,
    project_id    TEXT NOT NULL,
    feed_id       TEXT NOT NULL,
    status        TEXT NOT NULL,              -- pending | approved | rejected
    renotify_at   REAL,                       -- deferred: push again then
    defers        INTEGER NOT NULL DEFAULT 0,
    decided_at    REAL,
    decided_by    TEXT,                       -- dashboard | push | the API key's name
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX approvals_project ON approvals(project_id, event_seq);
CREATE INDEX approvals_status ON approvals(project_id, status, event_seq);
CREATE INDEX approvals_renotify ON approvals(renotify_at) WHERE renotify_at IS NOT NULL;

-- Every answer to an approval, with who gave it and the callback delivery it queued.
CREATE TABLE approval_actions (
    seq           INTEGER PRIMARY KEY,
    event_seq     INTEGER NOT NULL REFERENCES approvals(event_seq) ON DELETE CASCADE,
    action        TEXT NOT NULL,              -- approve | reject | defer
    actor         TEXT NOT NULL,
    at            REAL NOT NULL,
    delivery_id   TEXT,                       -- deliveries.id of its callback (purged with time)
    link_nonce    TEXT UNIQUE                 -- the action link used, so that each works once
);
CREATE INDEX approval_actions_approval ON approval_actions(event_seq, seq);

-- Push targets: Apprise URLs (the URL holds secrets; `shown` is its redacted form) and Web Push
-- subscriptions of browsers.
CREATE TABLE push_targets (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,               -- apprise | webpush
    url          TEXT NOT NULL,               -- the Apprise URL, or the subscription's endpoint
    shown        TEXT NOT NULL,
    service      TEXT NOT NULL,               -- e.g. "ntfy", "Telegram", or the push service's host
    p256dh       TEXT,                        -- webpush: the browser's keys
    auth         TEXT,
    created_at   REAL NOT NULL,
    UNIQUE (project_id, kind, url)
);

-- Pushes: one row per event that asked for one (or approval, or reminder), queued in the event's
-- transaction and sent by the scheduler; suppressed and coalesced ones are kept as the log says.
CREATE TABLE pushes (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    feed_id      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    approval     INTEGER NOT NULL DEFAULT 0,  -- with action links; exempt from the per-feed limit
    status       TEXT NOT NULL,               -- queued | held | sending | sent | failed | suppressed | coalesced
    reason       TEXT,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    send_at      REAL,                        -- queued: due then; sending: lease end
    created_at   REAL NOT NULL,
    sent_at      REAL
);
CREATE INDEX pushes_due ON pushes(send_at) WHERE status IN ('queued', 'sending');
CREATE INDEX pushes_held ON pushes(project_id) WHERE status = 'held';
CREATE INDEX pushes_project ON pushes(project_id, seq);
CREATE INDEX pushes_event ON pushes(event_id);
CREATE INDEX pushes_created ON pushes(created_at);

CREATE TABLE push_results (
    push_seq     INTEGER NOT NULL REFERENCES pushes(seq) ON DELETE CASCADE,
    target_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,               -- sent | failed | removed (a 404/410 subscription)
    error        TEXT,
    at           REAL NOT NULL,
    PRIMARY KEY (push_seq, target_id)
) WITHOUT ROWID;
"""

DASHBOARD = """
-- The dashboard's administrator (one row): the argon2 password hash and the current setup token.
CREATE TABLE admin (
    id                      INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash           TEXT,
    password_set_at         REAL,
    setup_token_hash        TEXT,            -- sha256 of the newest setup link's token
    setup_token_expires_at  REAL             -- NULL: valid until a password is set (first start)
);

-- Signed-in browsers: the cookie value is stored as a hash.
CREATE TABLE dashboard_sessions (
    hash        TEXT PRIMARY KEY,
    csrf        TEXT NOT NULL,
    project_id  TEXT REFERENCES projects(id) ON DELETE SET NULL,  -- NULL: the default project
    created_at  REAL NOT NULL,
    seen_at     REAL NOT NULL,
    expires_at  REAL NOT NULL,
    user_agent  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions(expires_at);
"""

AGENT_PROFILE = """
-- What the visitor widget's header shows of an agent; NULL: not set.
ALTER TABLE agents ADD COLUMN display_name TEXT;
ALTER TABLE agents ADD COLUMN avatar_url TEXT;   -- https only
ALTER TABLE agents ADD COLUMN reply_time TEXT;   -- in_a_few_minutes | in_a_few_hours | in_a_day
"""

HOME = """
-- The dashboard's home screen: a tile per feed, in the order the administrator arranged them (per
-- project), at a size, and dimmed when no event came within `expected_seconds`.
CREATE TABLE dashboard_tiles (
    feed_id           TEXT PRIMARY KEY REFERENCES feeds(id) ON DELETE CASCADE,
    project_id        TEXT NOT NULL,
    position          INTEGER,               -- NULL: after the arranged ones, in creation order
    size              TEXT,                  -- small | medium | large; NULL: the schema's default
    expected_seconds  REAL,                  -- NULL: never stale
    updated_at        REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_tiles_project ON dashboard_tiles(project_id, position);

-- How far the administrator has read each conversation (a message's stream number).
CREATE TABLE conversation_reads (
    session_id  TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    read_seq    INTEGER NOT NULL,
    read_at     REAL NOT NULL
) WITHOUT ROWID;

-- The dashboard page a push opens (a conversation's); NULL: the feed's or approval's as before.
ALTER TABLE pushes ADD COLUMN open_path TEXT;

-- An approval feed's widget shows its oldest pending request; decided lists go in decision order.
CREATE INDEX approvals_feed ON approvals(feed_id, status, event_seq);
CREATE INDEX approvals_decided ON approvals(project_id, decided_at, event_seq) WHERE decided_at IS NOT NULL;
"""

RULES_IN_PYTHON = """
-- Business rules live in Python (DESIGN §6): who gets a delivery is decided by outbox.emit, what a
-- widget shows by ingest, in the same transactions the triggers ran in.
DROP TRIGGER events_widget;
DROP TRIGGER out_events_queue;
"""

TOPICS = """
-- A feed's topic: the name ntfy clients publish to (`/ntfy/{topic}`), unique within its project.
ALTER TABLE feeds ADD COLUMN topic TEXT;
CREATE UNIQUE INDEX feeds_topic ON feeds(project_id, topic);

-- A push's action buttons (JSON): a link to open, or an HTTP request Glimpze makes once tapped.
ALTER TABLE pushes ADD COLUMN actions TEXT;
"""

FRESHNESS = """
-- A feed's widget PNGs say when the feed was last updated ("updated 14:05"); screens have their own.
ALTER TABLE feeds ADD COLUMN show_updated INTEGER NOT NULL DEFAULT 0;
"""

DISPLAYS = """
-- Screens and e-ink devices (DESIGN §9). Written for SQLite and PostgreSQL alike, except where noted:
-- `seq INTEGER PRIMARY KEY` is SQLite's rowid (PostgreSQL: BIGINT GENERATED BY DEFAULT AS IDENTITY)
-- and BLOB is PostgreSQL's BYTEA.

-- A screen: one to four feeds laid out on a canvas, read with its own read token (`gzr_…`).
CREATE TABLE screens (
    seq           INTEGER PRIMARY KEY,       -- list order
    id            TEXT NOT NULL UNIQUE,
    project_id    TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    layout        TEXT NOT NULL,             -- full | halves | grid | hero
    feeds         TEXT NOT NULL,             -- JSON list of feed ids, in layout order
    theme         TEXT NOT NULL,             -- light | dark | eink
    show_updated  INTEGER NOT NULL,          -- 0 | 1
    read_token    TEXT NOT NULL UNIQUE,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX screens_project ON screens(project_id, seq);

-- A device that speaks the TRMNL firmware's protocol, known by its MAC address. It gets no content
-- until it is accepted; accepting mints its access token, which /api/setup hands out until the
-- device first uses it (`token` is then cleared: only its hash is kept).
CREATE TABLE devices (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    project_id       TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    mac              TEXT NOT NULL UNIQUE,   -- AA:BB:CC:DD:EE:FF
    friendly_id      TEXT NOT NULL,          -- six characters the device shows
    name             TEXT NOT NULL,
    accepted         INTEGER NOT NULL,       -- 0 | 1
    token_hash       TEXT UNIQUE,            -- sha256 of the access token; NULL until accepted
    token            TEXT,                   -- the token itself, until the device has used it
    playlist         TEXT NOT NULL,          -- JSON [{"screen_id": …, "seconds": …}]
    playlist_index   INTEGER NOT NULL,       -- the item on show
    shown_since      REAL,                   -- since when; NULL: start at the next poll
    bit_depth        INTEGER NOT NULL,       -- 1 | 2
    format           TEXT NOT NULL,          -- png | bmp
    model            TEXT,
    width            INTEGER,
    height           INTEGER,
    battery_voltage  REAL,
    rssi             INTEGER,
    firmware         TEXT,
    refresh_rate     INTEGER,                -- seconds, as the device last said or was told
    last_seen_at     REAL,
    setup_asked_at   REAL,                   -- /api/setup was called again after the token was used
    last_filename    TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX devices_project ON devices(project_id, seq);

-- What devices posted to /api/log: the newest lines per device are kept.
CREATE TABLE device_logs (
    seq          INTEGER PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    received_at  REAL NOT NULL,
    logged_at    REAL,                       -- the device's own time of the line, when it said
    level        TEXT,
    message      TEXT NOT NULL,
    entry        TEXT NOT NULL               -- the whole line, as JSON
);
CREATE INDEX device_logs_device ON device_logs(device_id, seq);

-- The images /api/display pointed devices at (`/s/img/{filename}.{format}`): the newest few per device.
CREATE TABLE display_images (
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    filename    TEXT NOT NULL,               -- first 16 hex of the SHA-256 of data
    format      TEXT NOT NULL,               -- png | bmp
    data        BLOB NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (device_id, filename)
);
CREATE INDEX display_images_filename ON display_images(filename);
"""

DELIVERY_SPANS = """
-- Deliveries not yet attempted are not rows (issue 18; glimpze/delivery/backlog.py): a webhook takes
-- spans of the outgoing-event log, and the dispatcher turns the events of a span that match its
-- filter into delivery rows as it sends them. Delivery ids are `dlv_` + the event's seq (10 hex
-- digits) + the webhook's delivery code, so one that has no row yet can already be read by id.
ALTER TABLE webhooks ADD COLUMN delivery_code TEXT NOT NULL DEFAULT '';
UPDATE webhooks SET delivery_code = lower(hex(randomblob(5)));
CREATE UNIQUE INDEX webhooks_delivery_code ON webhooks(delivery_code);

CREATE TABLE webhook_spans (
    webhook_id   TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    start_seq    INTEGER NOT NULL,            -- the out_events.seq it began after (names the span)
    after_seq    INTEGER NOT NULL,            -- the cursor: events up to here have a row or are not for it
    through_seq  INTEGER,                     -- its last event; NULL while it goes on (the webhook is active)
    events       TEXT NOT NULL,               -- the webhook's filter over the span: a JSON array, or ["*"]
    PRIMARY KEY (webhook_id, start_seq)
) WITHOUT ROWID;
-- Every event so far had its deliveries queued as rows: active webhooks start at the newest.
INSERT INTO webhook_spans (webhook_id, start_seq, after_seq, through_seq, events)
SELECT w.id, h.seq, h.seq, NULL, CASE WHEN w.events LIKE '%"*"%' THEN '["*"]' ELSE w.events END
FROM webhooks w, (SELECT coalesce(max(seq), 0) AS seq FROM out_events) h
WHERE w.active;

-- Filtered long polls and a span's events of a type: an index range each, whatever lies between.
-- `type_seq` numbers a project's events of a type (1, 2, …), so the deliveries a span holds are
-- counted with two seeks per type, however many they are (metrics, `glimpze check`, the dashboard).
ALTER TABLE out_events ADD COLUMN type_seq INTEGER;
UPDATE out_events SET type_seq = n.r
FROM (SELECT seq, row_number() OVER (PARTITION BY project_id, type ORDER BY seq) AS r FROM out_events) n
WHERE n.seq = out_events.seq;
CREATE INDEX out_events_type ON out_events(project_id, type, seq, type_seq);
-- A webhook's deliveries, newest first, in event order (the order its not-yet-rows continue).
DROP INDEX deliveries_webhook;
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, event_seq);
"""

FEED_FILTER = """
-- Webhooks filtered by feed (issue 21): a webhook's `feed_ids` (NULL: every feed), and the filter
-- in force over each span (`feeds`, NULL: every feed). The events that name a feed (feed.event,
-- approval.*) carry it beside them, numbered per feed and type like `type_seq` per type, so a
-- filtered span reads, and counts, one index range per feed and type.
ALTER TABLE webhooks ADD COLUMN feed_ids TEXT;
ALTER TABLE webhook_spans ADD COLUMN feeds TEXT;
ALTER TABLE out_events ADD COLUMN feed_id TEXT;
ALTER TABLE out_events ADD COLUMN feed_seq INTEGER;
UPDATE out_events SET feed_id = json_extract(CAST(payload AS TEXT), '$.feed_id')
WHERE type IN ('feed.event', 'approval.requested', 'approval.responded');
UPDATE out_events SET feed_seq = n.r
FROM (SELECT seq, row_number() OVER (PARTITION BY project_id, feed_id, type ORDER BY seq) AS r
      FROM out_events WHERE feed_id IS NOT NULL) n
WHERE n.seq = out_events.seq;
CREATE INDEX out_events_feed ON out_events(project_id, feed_id, type, seq, feed_seq) WHERE feed_id IS NOT NULL;
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("core: projects, keys, feeds, events, idempotency", CORE),
    ("webhooks: outgoing events, webhooks, deliveries, attempts", WEBHOOKS),
    ("images: feed read tokens, uploaded media and the events that reference it", IMAGES),
    ("conversations: settings, agents, sessions, messages, notes, handoffs, leads", CONVERSATIONS),
    ("ctas: an agent's call-to-action rules; leads by session", CTAS),
    ("approvals: callback deliveries, approvals, push targets, pushes", APPROVALS),
    ("dashboard: the administrator's password and setup token, dashboard sessions", DASHBOARD),
    ("agent profile: display name, avatar and reply time for the visitor widget's header", AGENT_PROFILE),
    ("home: dashboard tiles, conversation reads, push pages, approval widget indexes", HOME),
    ("rules in python: the triggers that queued deliveries and moved the widget pointer go", RULES_IN_PYTHON),
    ("topics: a feed's ntfy topic; a push's action buttons", TOPICS),
    ("freshness: a feed's widget PNGs may say when it was last updated", FRESHNESS),
    ("displays: screens, e-ink devices, their logs and images", DISPLAYS),
    ("delivery spans: deliveries made from the event log as they are sent; events by type", DELIVERY_SPANS),
    ("feed filter: webhooks filtered by feed; events by feed", FEED_FILTER),
]
