"""The project store on both backends (a real SQLite file and a real PostgreSQL cluster):
migrations, the write path, crash safety, copying between them, backup and restore."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from pipeline.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NewDecision,
    PrivacyMarks,
    StaleUnitError,
    Store,
    StoreError,
)


def first_units(store: Store, n: int) -> list[str]:
    units = store.units()
    return units.loc[units["codable"], "unit_id"].head(n).tolist()


def append_only_error(store: Store) -> type[Exception]:
    if store.backend == "sqlite":
        return sqlite3.DatabaseError
    import psycopg

    return psycopg.errors.RaiseException


def test_new_store_is_at_the_latest_schema(store_location):
    with Store(store_location) as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.latest_run_id() is None
        with pytest.raises(StoreError, match="no runs yet"):
            store.codebook()


def test_migration_from_version_1_keeps_decisions(store_location):
    # Build a version-1 database by hand, add a decision, then open it with today's code.
    old = store_location
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


def test_newer_schema_is_refused(store_location):
    with Store(store_location) as store:
        if store.backend == "sqlite":
            store.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        else:
            store.db.set_schema_version(SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer qcode"):
        Store(store_location)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a qcode project database"):
        Store(path)


def test_decisions_are_append_only(project_location):
    with Store(project_location) as store:
        unit = first_units(store, 1)[0]
        store.decide("ann", [NewDecision(unit, "ts.trust", "accept")])
        with pytest.raises(append_only_error(store), match="append-only"):
            store.db.execute("UPDATE decisions SET action = 'reject'")
        with pytest.raises(append_only_error(store), match="append-only"):
            store.db.execute("DELETE FROM decisions")
        assert store.decisions()["action"].tolist() == ["accept"]


def test_decision_count_up_to_an_id(project_location):
    """The review page's check that no decision was committed out of id order: the count of
    decisions with an id up to a given one, on both backends."""
    with Store(project_location) as store:
        assert store.decision_count() == 0 and store.decision_count(10) == 0
        ids = store.decide("ann", [NewDecision(u, "", "note", "m") for u in first_units(store, 5)])
        assert store.decision_count() == 5
        assert store.decision_count(ids[2]) == 3
        assert store.decision_count(ids[-1]) == 5
        assert store.decision_count(0) == 0


def test_a_failing_batch_writes_nothing(project_location):
    with Store(project_location) as store:
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


def test_stale_page_is_refused(project_location):
    with Store(project_location) as store:
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


def test_decision_needs_reviewer_and_known_action(project_location):
    with Store(project_location) as store:
        unit = first_units(store, 1)[0]
        with pytest.raises(StoreError, match="reviewer"):
            store.decide("  ", [NewDecision(unit, "ts.trust", "accept")])
        with pytest.raises(StoreError, match="is not a decision"):
            store.decide("ann", [NewDecision(unit, "ts.trust", "approve")])


def test_killed_writer_loses_no_committed_decision(project_location):
    """Kill a process in the middle of writing batches; every committed batch survives and
    the store opens consistent."""
    project_store = project_location
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
        if store.backend == "sqlite":
            assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        decisions = store.decisions()
        per_batch = decisions.groupby("memo").size()
        # Every batch that reported success is there whole; no batch is there in part.
        assert set(range(committed + 1)) <= {int(m) for m in per_batch.index}
        assert (per_batch == len(units)).all()


def test_unreachable_database_is_a_clear_error(tmp_path):
    url = f"postgresql://qcode@/nothing?host={tmp_path}"
    with pytest.raises(StoreError, match="cannot open the project database"):
        Store(url)


def test_a_run_recorded_on_either_backend_reads_back_the_same(
    store_location, tmp_path, nlp, encoder, codebook, sample_transcripts, embedding_cache
):
    """record_run (upserts, executemany, booleans) on the backend under test, compared with the
    same run recorded in SQLite: same units, suggestions, codebook and texts."""
    from tests.conftest import record_real_run

    transcripts, problems = sample_transcripts
    stages = (transcripts, problems, nlp, encoder, codebook, embedding_cache)
    record_real_run(store_location, *stages)
    record_real_run(tmp_path / "reference.sqlite", *stages)
    with Store(store_location) as store, Store(tmp_path / "reference.sqlite") as reference:
        pd.testing.assert_frame_equal(store.units(), reference.units())
        pd.testing.assert_frame_equal(store.suggestions(), reference.suggestions())
        assert store.codebook() == reference.codebook()
        assert store.transcript_texts() == reference.transcript_texts()
        assert store.transcript_attributes() == reference.transcript_attributes()
        # A second run replaces units (INSERT OR REPLACE) and keeps both runs' suggestions.
    record_real_run(store_location, *stages)
    with Store(store_location) as store:
        assert len(store.units()) == len(reference_units := store.units())
        runs = [r[0] for r in store.db.execute("SELECT run_id FROM runs ORDER BY rowid")]
        assert len(runs) == 2
        assert len(store.db.execute("SELECT version FROM suggestions").fetchall()) == 2 * len(
            store.suggestions()
        )
        assert reference_units["unit_id"].is_unique


def test_a_run_stores_only_the_suggestions_of_new_versions(store_location):
    """Suggestions are kept per transcript version: a run whose transcript kept its version
    lists it and writes none of its rows again; both runs read back their own suggestions."""
    from pipeline.codebook import load_codebook

    codebook = load_codebook("codebooks/west_partnership.yaml")
    units = pd.DataFrame(
        {
            "unit_id": ["a1", "a2", "b1"],
            "transcript_id": ["A", "A", "B"],
            "turn_index": [0, 1, 0],
            "speaker": "P",
            "speaker_kind": "participant",
            "start": [0, 10, 0],
            "end": [9, 19, 9],
            "text": ["one", "two", "three"],
            "codable": True,
            **dict.fromkeys(["role", "local_authority", "workstream", "network"], ""),
        }
    )

    def suggested(scores: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "unit_id": ["a1", "a2", "b1"],
                "code_id": "ts.trust",
                "score": scores,
                "rank": 1,
                "margin": 0.1,
                "probability": None,
            }
        )

    with Store(store_location) as store:
        store.record_run(
            {"run_id": "r1"},
            [],
            units,
            suggested([0.5, 0.6, 0.7]),
            codebook,
            {"A": "vA", "B": "vB1"},
        )
        # B edited (a new version with new scores); A unchanged, so its rows are not written.
        store.record_run(
            {"run_id": "r2"},
            [],
            units,
            suggested([0.5, 0.6, 0.9]),
            codebook,
            {"A": "vA", "B": "vB2"},
        )
        stored = store.db.execute("SELECT version, unit_id FROM suggestions ORDER BY 1, 2")
        assert stored.fetchall() == [("vA", "a1"), ("vA", "a2"), ("vB1", "b1"), ("vB2", "b1")]
        assert store.suggestions("r1")["score"].tolist() == [0.5, 0.6, 0.7]
        assert store.suggestions("r2")["score"].tolist() == [0.5, 0.6, 0.9]
        assert store.suggestions()["score"].tolist() == [0.5, 0.6, 0.9]


def test_migration_keeps_each_earlier_runs_suggestions(store_location):
    """Schema 6 kept suggestions per run; after migration 7 each run reads back its own."""
    with Store(store_location, migrate=False) as store:
        store.migrate(to=6)
        db = store.db
        db.execute("INSERT INTO codebooks VALUES ('c', 'book', '{}', 'now')")
        for run, score in (("r1", 0.25), ("r2", 0.75)):
            db.execute("INSERT INTO runs VALUES (?, ?, 'c', '{}', '{}')", (run, f"t-{run}"))
            db.execute(
                "INSERT INTO suggestions (run_id, unit_id, code_id, score, rank, margin)"
                " VALUES (?, 'u1', 'ts.trust', ?, 1, 0.1)",
                (run, score),
            )
    with Store(store_location) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.suggestions("r1")["score"].tolist() == [0.25]
        assert store.suggestions("r2")["score"].tolist() == [0.75]


def test_a_run_writes_only_the_units_of_changed_versions(
    store_location, nlp, encoder, codebook, sample_transcripts, embedding_cache
):
    """record_run writes the units of transcripts whose version changed since the latest run
    and leaves the others' rows alone; reading a run gives each transcript's units of that
    run's version. A unit the new version lacks keeps its old version: an earlier unit."""
    from tests.conftest import record_real_run

    transcripts, problems = sample_transcripts
    record_real_run(store_location, transcripts, problems, nlp, encoder, codebook, embedding_cache)
    with Store(store_location) as store:
        first, units, manifest = store.latest_run_id(), store.units(), store.manifest()
        versions = dict(
            store.db.execute(
                "SELECT transcript_id, version FROM run_transcripts WHERE run_id = ?", (first,)
            )
        )
        edited = units.at[1, "transcript_id"]
        kept = units.loc[units["transcript_id"] != edited, "unit_id"].tolist()
        gone = units.at[1, "unit_id"]
        second = units.drop(index=1).copy()
        second.loc[0, "top_score"] = 0.123  # a changed row
        second.loc[2, "text"] = second.loc[2, "text"] + " (edited)"
        added = second.iloc[[3]].assign(unit_id="added-unit", start=10**6, end=10**6 + 5)
        second = pd.concat([second, added], ignore_index=True)
        assert set(second.loc[[0, 2, len(second) - 1], "transcript_id"]) == {edited}
        empty = store.suggestions().iloc[:0]
        store.record_run(
            {**manifest, "run_id": "run-2"},
            [],
            second,
            empty,
            store.codebook(),
            {**versions, edited: "edited version"},
        )
        assert store.latest_run_id() == "run-2"
        key = ["transcript_id", "start"]
        expected = second.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(
            store.units().sort_values(key).reset_index(drop=True), expected, check_dtype=False
        )
        rows = store.db.execute("SELECT last_run_id, version FROM units WHERE unit_id = ?", (gone,))
        assert rows.fetchall() == [(first, versions[edited])]  # gone: an earlier unit
        assert store.earlier_units("run-2")["unit_id"].tolist() == [gone]
        written = dict(store.db.execute("SELECT unit_id, last_run_id FROM units"))
        assert {written[u] for u in kept} == {first}  # unchanged transcripts: not rewritten
        assert written["added-unit"] == "run-2"
        # The first run still reads back the units its versions still have, the gone one too.
        assert set(store.units(first)["unit_id"]) == {*kept, gone}


def test_store_copy_sqlite_to_postgresql_and_back_is_row_for_row(
    project_store, pg_cluster, tmp_path
):
    from pipeline.store_copy import copy_store, tables
    from tests.conftest import new_database

    with Store(project_store) as store:
        unit = first_units(store, 1)[0]
        store.decide("ann", [NewDecision(unit, "ts.trust", "accept", memo="ü ✓ 'quoted'")])
        PrivacyMarks(store).mark_false_alarm("ann", "Oakfield")
    url = new_database(pg_cluster)
    with Store(project_store) as source, Store(url) as middle:
        report = copy_store(source, middle)
        assert report.tables["decisions"] == 1 and report.tables["units"] > 100
        assert "verified" in report.summary()
    back = tmp_path / "back.sqlite"
    with Store(url) as middle, Store(back) as destination:
        copy_store(middle, destination)
        # New decisions continue the ids: the PostgreSQL sequence was moved past the copy.
        ids = middle.decide("bob", [NewDecision(unit, "ts.trust", "reject")])
        assert ids == [2]
    with Store(project_store) as original, Store(back) as copy:
        for table in tables(original):
            a = original.db.execute(f'SELECT * FROM "{table}"').fetchall()
            b = copy.db.execute(f'SELECT * FROM "{table}"').fetchall()
            assert sorted(a, key=repr) == sorted(b, key=repr), table
        runs = "SELECT run_id FROM runs ORDER BY rowid"  # insertion order kept: ties in time
        assert original.db.execute(runs).fetchall() == copy.db.execute(runs).fetchall()
        assert copy.latest_run_id() == original.latest_run_id()


def test_store_copy_refuses_a_destination_that_holds_a_project(project_store, tmp_path):
    from pipeline.store_copy import copy_store

    with (
        Store(project_store) as source,
        Store(project_store) as same,
        pytest.raises(StoreError, match="already holds a project"),
    ):
        copy_store(source, same)


def test_copy_that_differs_is_reported(project_store, tmp_path, monkeypatch):
    """The verification is real: a copy that lost one row of units is refused. (A patched
    reader drops the row; the real copy path is tested above.)"""
    import pipeline.store_copy as store_copy

    read = store_copy._rows

    def lossy(store, table):
        columns, rows = read(store, table)
        return (columns, rows[:-1]) if table == "units" else (columns, rows)

    monkeypatch.setattr(store_copy, "_rows", lossy)
    with (
        Store(project_store) as source,
        Store(tmp_path / "d.sqlite") as destination,
        pytest.raises(StoreError, match="table units differs from the original"),
    ):
        store_copy.copy_store(source, destination)


def test_backup_with_pg_dump_restores_with_pg_restore(pg_cluster, _pg_project_template, tmp_path):
    """The deployment guide's backup: pg_dump's custom format, restored into a new database,
    holds every row (decisions, accounts, audit) and opens as the same project."""
    from pipeline.accounts import add_user, login
    from pipeline.pgcluster import find_binary
    from pipeline.store_copy import _digests, _rows, tables
    from tests.conftest import new_database

    url = new_database(pg_cluster, template=_pg_project_template)
    with Store(url) as store:
        unit = first_units(store, 1)[0]
        store.decide("ann", [NewDecision(unit, "ts.trust", "accept", memo="keep")])
        add_user(store, "Ann", "reviewer", "a-long-password-1")
    dump = tmp_path / "project.dump"
    subprocess.run([find_binary("pg_dump"), "-Fc", "-f", str(dump), url], check=True)
    restored = new_database(pg_cluster)
    subprocess.run([find_binary("pg_restore"), "--no-owner", "-d", restored, str(dump)], check=True)
    with Store(url) as original, Store(restored) as copy:
        assert copy.schema_version == SCHEMA_VERSION
        for table in tables(original):
            columns, _ = _rows(original, table)
            assert _digests(original, table, columns) == _digests(copy, table, columns), table
        assert copy.latest_run_id() == original.latest_run_id()
        assert login(copy, "Ann", "a-long-password-1")[1].role == "reviewer"
        # The restored sequence continues after the restored decisions.
        assert copy.decide("bob", [NewDecision(unit, "ts.trust", "reject")]) == [2]


def test_pooled_stores_reuse_connections_and_come_back_clean(pg_cluster, project_store):
    """The review page opens a store per request with ``pooled=True``: the connection comes
    from the process's pool and goes back on close; a write that failed half-way is rolled
    back before anyone borrows it again, and nothing of it is stored."""
    from pipeline.store_pg import _pool
    from tests.conftest import new_database

    url = new_database(pg_cluster)
    with Store(project_store) as source, Store(url) as destination:
        from pipeline.store_copy import copy_store

        copy_store(source, destination)
    with Store(url, migrate=False) as store:
        unit_id, code_id = store.suggestions()[["unit_id", "code_id"]].iloc[0]
        before = store.decision_count()
    seen = set()
    for _ in range(20):
        with Store(url, migrate=False, pooled=True) as store:
            seen.add(id(store.db.connection))
            assert store.latest_run_id() is not None
    assert len(seen) <= 2  # 20 stores opened on one or two connections (the pool fills
    # its minimum in the background, so the first may be made beside it)
    store = Store(url, migrate=False, pooled=True)
    with pytest.raises(RuntimeError, match="half-way"), store.write() as db:
        db.execute(
            "INSERT INTO audit_events (account, at, action) VALUES (?, ?, ?)",
            ("Lee", "now", "half"),
        )
        raise RuntimeError("stopped half-way")
    store.db.connection.execute("BEGIN")  # even one left inside a transaction ...
    store.close()
    with Store(url, migrate=False, pooled=True) as again:  # ... comes back clean
        again.decide("Rae", [NewDecision(unit_id, code_id, "accept")])
        assert again.decision_count() == before + 1
        assert again.db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == 0
    assert _pool(url).get_stats()["pool_max"] <= 10
