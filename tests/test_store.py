"""The project store on a real SQLite file: migrations, the write path, crash safety."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NewDecision,
    StaleUnitError,
    Store,
    StoreError,
)


def first_units(store: Store, n: int) -> list[str]:
    units = store.units()
    return units.loc[units["codable"], "unit_id"].head(n).tolist()


def test_new_store_is_at_the_latest_schema(tmp_path):
    with Store(tmp_path / "p.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.latest_run_id() is None
        with pytest.raises(StoreError, match="no runs yet"):
            store.codebook()


def test_migration_from_version_1_keeps_decisions(tmp_path, project_store):
    # Build a version-1 database by hand, add a decision, then open it with today's code.
    old = tmp_path / "old.sqlite"
    with Store(old, migrate=False) as store:
        store.migrate(to=1)
        assert store.schema_version == 1
        store.db.execute(
            'INSERT INTO decisions (reviewer, at, unit_id, transcript_id, start, "end", text,'
            " text_sha256, code_id, action, memo) VALUES ('ann', 'now', 'u', 't', 0, 1, 'x',"
            " 's', 'ts.trust', 'accept', '')"
        )
    with Store(old) as store:
        assert store.schema_version == SCHEMA_VERSION
        decisions = store.decisions()
        assert decisions["reviewer"].tolist() == ["ann"]
        assert decisions["source"].tolist() == ["web"]  # the column migration 2 added


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "p.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer qcode"):
        Store(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a qcode project database"):
        Store(path)


def test_decisions_are_append_only(project_store):
    with Store(project_store) as store:
        unit = first_units(store, 1)[0]
        store.decide("ann", [NewDecision(unit, "ts.trust", "accept")])
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("UPDATE decisions SET action = 'reject'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute("DELETE FROM decisions")
        assert store.decisions()["action"].tolist() == ["accept"]


def test_a_failing_batch_writes_nothing(project_store):
    with Store(project_store) as store:
        good = first_units(store, 1)[0]
        with pytest.raises(StoreError, match="not in this project"):
            store.decide(
                "ann",
                [
                    NewDecision(good, "ts.trust", "accept"),
                    NewDecision("no-such-unit", "ts.trust", "accept"),
                ],
            )
        assert store.decisions().empty


def test_stale_page_is_refused(project_store):
    with Store(project_store) as store:
        unit = first_units(store, 1)[0]
        seen = store.unit_version(unit)
        store.decide(
            "ann", [NewDecision(unit, "ts.trust", "accept")], expected_versions={unit: seen}
        )
        with pytest.raises(StaleUnitError, match="changed by someone else"):
            store.decide(
                "bob", [NewDecision(unit, "ts.trust", "reject")], expected_versions={unit: seen}
            )
        assert store.decisions()["reviewer"].tolist() == ["ann"]
        # In blind double coding only one's own decisions count.
        store.decide(
            "bob",
            [NewDecision(unit, "ts.trust", "reject")],
            expected_versions={unit: 0},
            version_reviewer="bob",
        )
        assert store.decisions()["reviewer"].tolist() == ["ann", "bob"]


def test_decision_needs_reviewer_and_known_action(project_store):
    with Store(project_store) as store:
        unit = first_units(store, 1)[0]
        with pytest.raises(StoreError, match="reviewer"):
            store.decide("  ", [NewDecision(unit, "ts.trust", "accept")])
        with pytest.raises(StoreError, match="is not a decision"):
            store.decide("ann", [NewDecision(unit, "ts.trust", "approve")])


def test_killed_writer_loses_no_committed_decision(project_store):
    """Kill a process in the middle of writing batches; every committed batch survives and
    the store opens consistent."""
    with Store(project_store) as store:
        units = first_units(store, 50)
    script = textwrap.dedent(f"""
        import sys
        from pipeline.store import NewDecision, Store
        store = Store({str(project_store)!r})
        units = {units!r}
        batch = 0
        while True:
            ids = store.decide("writer", [NewDecision(u, "ts.trust", "accept", memo=str(batch))
                                          for u in units])
            print(batch, flush=True)
            batch += 1
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    committed = -1
    deadline = time.time() + 60
    while committed < 5 and time.time() < deadline:
        line = process.stdout.readline()
        if line.strip().isdigit():
            committed = int(line)
    process.kill()
    process.wait()
    assert committed >= 5
    with Store(project_store) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        decisions = store.decisions()
        per_batch = decisions.groupby("memo").size()
        # Every batch that reported success is there whole; no batch is there in part.
        assert set(range(committed + 1)) <= {int(m) for m in per_batch.index}
        assert (per_batch == len(units)).all()
