from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tursi.daemon.state import Deployment, StateStore, load_migrations


def _dep(name: str, status: str = "running", port: int = 9000) -> Deployment:
    return Deployment(
        name=name,
        model="minilm",
        source="/m",
        task="embeddings",
        format="onnx",
        quantization="int8-dynamic",
        artifact_key="k",
        artifact_path="/a/k",
        host="127.0.0.1",
        port=port,
        status=status,
        created_at=time.time(),
        options={"bits": 8},
    )


def test_fresh_database_is_migrated_to_latest_in_wal_mode(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    assert store.schema_version == len(load_migrations()) >= 1
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"deployments", "artifacts", "events"} <= tables
    assert store.integrity_ok()


def test_migrations_apply_forward_only_once(tmp_path: Path) -> None:
    base = load_migrations()
    extra = (len(base) + 1, f"{len(base) + 1:04d}_add_note.sql", "ALTER TABLE deployments ADD COLUMN note TEXT;")
    store = StateStore(tmp_path / "state.db")
    assert store.migrate([*base, extra]) == [extra[1]]
    assert store.schema_version == len(base) + 1
    assert store.migrate([*base, extra]) == []  # already applied: nothing runs twice
    cols = {r[1] for r in store._db.execute("PRAGMA table_info(deployments)")}
    assert "note" in cols


def test_failed_migration_rolls_back_and_keeps_version(tmp_path: Path) -> None:
    base = load_migrations()
    broken = (len(base) + 1, "bad.sql", "CREATE TABLE t1 (x INTEGER); CREATE TABLE deployments (x INTEGER);")
    store = StateStore(tmp_path / "state.db")
    with pytest.raises(sqlite3.OperationalError):
        store.migrate([broken])
    assert store.schema_version == len(base)
    assert store._db.execute("SELECT name FROM sqlite_master WHERE name = 't1'").fetchone() is None


def test_migration_files_are_numbered_in_sequence() -> None:
    versions = [v for v, _, _ in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_deployment_round_trip_and_filters(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.add_deployment(_dep("a", "running", 9001))
    store.add_deployment(_dep("b", "exited", 9002))
    got = store.get_deployment("a")
    assert got == _dep("a", "running", 9001).__class__(**{**got.__dict__})
    assert got.options == {"bits": 8}
    assert got.endpoint == "http://127.0.0.1:9001/v1"
    assert [d.name for d in store.list_deployments(all=False)] == ["a"]
    assert [d.name for d in store.list_deployments(all=True)] == ["a", "b"]
    assert store.ports_in_use() == {9001}
    store.update_deployment("a", status="exited", exit_code=137)
    assert store.get_deployment("a").exit_code == 137
    assert store.ports_in_use() == set()
    assert store.remove_deployment("a") is True
    assert store.remove_deployment("a") is False
    assert store.get_deployment("a") is None


def test_duplicate_name_is_refused_by_the_database(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.add_deployment(_dep("a"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_deployment(_dep("a"))


def test_update_rejects_unknown_columns(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.add_deployment(_dep("a"))
    with pytest.raises(ValueError, match="unknown deployment columns"):
        store.update_deployment("a", nope=1)


def test_state_survives_reopen(tmp_path: Path) -> None:
    clock = iter([100.0, 200.0]).__next__
    store = StateStore(tmp_path / "state.db", clock=clock)
    store.add_deployment(_dep("a"))
    store.add_event("a", "started", "pid=1")
    store.record_artifact("k", "/a/k", "minilm", "onnx", "int8-dynamic", 123)
    store.close()
    again = StateStore(tmp_path / "state.db")
    assert again.get_deployment("a") is not None
    assert [(e["at"], e["kind"]) for e in again.events("a")] == [(100.0, "started")]
    assert again.get_artifact("k")["size_bytes"] == 123
    assert again.integrity_ok()


def test_events_table_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    """A restart loop writes events forever: the table keeps the newest 10 000 (+ at most one prune interval)."""
    store = StateStore(tmp_path / "state.db")
    store._db.execute("BEGIN")  # one transaction, for speed; add_event prunes inside it all the same
    for i in range(12_000):
        store.add_event("loop" if i % 2 else None, "restarting", f"n={i}")
    store._db.execute("COMMIT")
    count = store._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert 10_000 <= count <= 10_100
    assert store.events("loop", limit=1)[0]["detail"] == "n=11999"  # the newest stay
    assert store._db.execute("SELECT 1 FROM events WHERE detail = 'n=0'").fetchone() is None  # the oldest went


def test_events_over_the_bound_are_pruned_at_open(tmp_path: Path) -> None:
    """A database from before the bound (or with a smaller bound now) is trimmed when it is opened."""
    store = StateStore(tmp_path / "state.db")
    store._db.execute("BEGIN")
    store._db.executemany(  # rows written straight to the table, as before the bound
        "INSERT INTO events (at, deployment, kind, detail) VALUES (?, 'a', 'health', ?)",
        ((float(i), f"n={i}") for i in range(10_500)),
    )
    store._db.execute("COMMIT")
    store.close()
    again = StateStore(tmp_path / "state.db")
    assert again._db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 10_000
    assert [e["detail"] for e in again.events("a", limit=2)] == ["n=10498", "n=10499"]
