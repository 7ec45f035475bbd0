-- Registry references this daemon knows an artifact by: `tursi tag` and `tursi pull` record them, `tursi push` reads them.
CREATE TABLE registry_tags (
    ref TEXT PRIMARY KEY,
    artifact_key TEXT NOT NULL,
    digest TEXT,
    created_at REAL NOT NULL
);
