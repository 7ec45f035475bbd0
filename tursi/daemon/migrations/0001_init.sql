CREATE TABLE deployments (
    name            TEXT PRIMARY KEY,
    model           TEXT NOT NULL,
    source          TEXT NOT NULL,
    task            TEXT NOT NULL,
    format          TEXT NOT NULL,
    quantization    TEXT NOT NULL,
    artifact_key    TEXT NOT NULL,
    artifact_path   TEXT NOT NULL,
    host            TEXT NOT NULL,
    port            INTEGER NOT NULL,
    status          TEXT NOT NULL,
    pid             INTEGER,
    pid_started_at  REAL,
    exit_code       INTEGER,
    reason          TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    options         TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE artifacts (
    key         TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    source      TEXT NOT NULL,
    format      TEXT NOT NULL,
    quantization TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    deployment  TEXT,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);

CREATE INDEX events_by_deployment ON events (deployment, id);
