"""The state store: every SQL statement Tursi runs lives here.

SQLite in WAL mode; the schema version is ``PRAGMA user_version`` and migrations are the
numbered files in ``tursi/daemon/migrations`` (``0001_init.sql``, ...), applied forward only, each in
one transaction.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

ACTIVE = ("starting", "running", "restarting")
EVENTS_KEEP = 10_000  # the events table keeps this many of the newest rows (a restart loop must not fill the disk)
EVENTS_PRUNE_EVERY = 100  # inserts between two prunes: the table holds at most EVENTS_KEEP + this


@dataclass(frozen=True)
class Deployment:
    name: str
    model: str
    source: str
    task: str
    format: str
    quantization: str
    artifact_key: str
    artifact_path: str
    host: str
    port: int
    status: str
    created_at: float
    pid: int | None = None
    pid_started_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    health: str | None = None

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["endpoint"] = self.endpoint
        return d


def load_migrations(package: str = "tursi.daemon.migrations") -> list[tuple[int, str, str]]:
    """(version, filename, sql) for each migration file, sorted by version."""
    found = []
    for entry in resources.files(package).iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {name} out of sequence: expected {expected:04d}")
    return found


class StateStore:
    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        migrations: list[tuple[int, str, str]] | None = None,
        events_keep: int = EVENTS_KEEP,
    ) -> None:
        self.path = path
        self.clock = clock
        self.events_keep = events_keep
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA cache_size=-512")  # KiB: the database is small, tursid's RSS should be too
        self.migrate(migrations if migrations is not None else load_migrations())
        self.prune_events()  # a database from before the bound, or a smaller events_keep

    def close(self) -> None:
        self._db.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, migrations: Iterable[tuple[int, str, str]]) -> list[str]:
        applied = []
        for version, name, sql in migrations:
            if version <= self.schema_version:
                continue
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {int(version)}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            applied.append(name)
        return applied

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # -- deployments ---------------------------------------------------------------------------

    def add_deployment(self, dep: Deployment) -> None:
        row = asdict(dep)
        row["options"] = json.dumps(row["options"], sort_keys=True)
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        self._db.execute(f"INSERT INTO deployments ({cols}) VALUES ({marks})", row)

    def get_deployment(self, name: str) -> Deployment | None:
        row = self._db.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
        return _to_deployment(row) if row else None

    def list_deployments(self, *, all: bool = True) -> list[Deployment]:  # noqa: A002 - mirrors ps -a
        sql = "SELECT * FROM deployments"
        if not all:
            sql += f" WHERE status IN ({', '.join('?' for _ in ACTIVE)})"
        rows = self._db.execute(sql + " ORDER BY created_at", () if all else ACTIVE).fetchall()
        return [_to_deployment(r) for r in rows]

    def update_deployment(self, name: str, **changes: Any) -> None:
        if not changes:
            return
        allowed = set(Deployment.__dataclass_fields__) - {"name"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown deployment columns: {sorted(unknown)}")
        if "options" in changes:
            changes["options"] = json.dumps(changes["options"], sort_keys=True)
        sets = ", ".join(f"{c} = :{c}" for c in changes)
        self._db.execute(f"UPDATE deployments SET {sets} WHERE name = :name", {**changes, "name": name})

    def remove_deployment(self, name: str) -> bool:
        cur = self._db.execute("DELETE FROM deployments WHERE name = ?", (name,))
        return cur.rowcount > 0

    def ports_in_use(self) -> set[int]:
        sql = f"SELECT port FROM deployments WHERE status IN ({', '.join('?' for _ in ACTIVE)})"
        return {r[0] for r in self._db.execute(sql, ACTIVE)}

    # -- artifacts -----------------------------------------------------------------------------

    def record_artifact(self, key: str, path: str, source: str, fmt: str, quant: str, size: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO artifacts (key, path, source, format, quantization, size_bytes, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, path, source, fmt, quant, size, self.clock()),
        )

    def get_artifact(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM artifacts WHERE key = ?", (key,)).fetchone()
        return dict(row) if row else None

    def remove_artifact(self, key: str) -> bool:
        return self._db.execute("DELETE FROM artifacts WHERE key = ?", (key,)).rowcount > 0

    # -- registry tags -------------------------------------------------------------------------

    def set_tag(self, ref: str, artifact_key: str, digest: str | None = None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO registry_tags (ref, artifact_key, digest, created_at) VALUES (?, ?, ?, ?)",
            (ref, artifact_key, digest, self.clock()),
        )

    def get_tag(self, ref: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM registry_tags WHERE ref = ?", (ref,)).fetchone()
        return dict(row) if row else None

    def list_tags(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM registry_tags ORDER BY ref")]

    # -- events --------------------------------------------------------------------------------

    def add_event(self, deployment: str | None, kind: str, detail: str = "") -> None:
        cur = self._db.execute(
            "INSERT INTO events (at, deployment, kind, detail) VALUES (?, ?, ?, ?)",
            (self.clock(), deployment, kind, detail),
        )
        if cur.lastrowid is not None and cur.lastrowid % EVENTS_PRUNE_EVERY == 0:
            self.prune_events()

    def prune_events(self) -> int:
        """Keep the newest ``events_keep`` events (ids only grow: AUTOINCREMENT); returns how many went."""
        cur = self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (self.events_keep,))
        return cur.rowcount

    def events(self, deployment: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if deployment is None:
            rows = self._db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE deployment = ? ORDER BY id DESC LIMIT ?", (deployment, limit)
            )
        return [dict(r) for r in reversed(rows.fetchall())]


def _to_deployment(row: sqlite3.Row) -> Deployment:
    d = dict(row)
    d["options"] = json.loads(d.get("options") or "{}")
    return Deployment(**d)


def _split_sql(sql: str) -> list[str]:
    """Statements of a migration file (no semicolons inside string literals in our migrations)."""
    return [s.strip() for s in sql.split(";") if s.strip()]
