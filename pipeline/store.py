"""Store: one database per project holding transcripts, units, runs and decisions.

An SQLite file by default (embedded, nothing to run), or a PostgreSQL database when the location
is a ``postgresql://`` URL (a team sharing one project); ``pipeline.store_pg`` translates the
SQL below for it, so both share one schema and one migration history.

* The schema is versioned (``PRAGMA user_version``) and upgraded by numbered migrations.
* Every write goes through one path, ``BEGIN IMMEDIATE`` ... ``COMMIT``: a crash mid-write
  leaves the last committed state, never half of a batch (WAL journal, synchronous=FULL).
* Decisions are append-only events; nothing ever updates or deletes one. Re-runs replace
  machine suggestions only (each run keeps its own).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import ACTIONS, resolve_anchors, text_sha
from pipeline.errors import QcodeError
from pipeline.ingest import Transcript
from pipeline.store_pg import is_url, migration_statements, shown


class StoreError(QcodeError):
    """The project store cannot be opened or refuses a write."""

    code = "E600"
    fix = (
        "Check the --store path points at a qcode project database (outputs/project.sqlite by "
        "default) that you may write to; if it was written by a newer qcode, upgrade qcode."
    )


class StaleUnitError(StoreError):
    """Someone else decided on this unit after the page or sheet was loaded."""

    code = "E601"
    fix = (
        "Someone else decided on this unit after you opened it: reload the page (or export a "
        "fresh sheet) to see their decision, then decide again."
    )


MIGRATIONS: list[str] = [
    # 1: the core tables.
    """
    CREATE TABLE transcripts (
        transcript_id TEXT PRIMARY KEY,
        source_path TEXT NOT NULL,
        format TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        text TEXT NOT NULL,
        attributes TEXT NOT NULL,
        participants TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE codebooks (
        sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        content TEXT NOT NULL,
        stored_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        finished_at TEXT NOT NULL,
        codebook_sha256 TEXT NOT NULL REFERENCES codebooks(sha256),
        model TEXT NOT NULL,
        manifest TEXT NOT NULL
    );
    CREATE TABLE units (
        unit_id TEXT PRIMARY KEY,
        transcript_id TEXT NOT NULL,
        turn_index INTEGER NOT NULL,
        speaker TEXT NOT NULL,
        speaker_kind TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        text TEXT NOT NULL,
        codable INTEGER NOT NULL,
        role TEXT NOT NULL DEFAULT '',
        local_authority TEXT NOT NULL DEFAULT '',
        workstream TEXT NOT NULL DEFAULT '',
        network TEXT NOT NULL DEFAULT '',
        top_code TEXT,
        top_score REAL,
        last_run_id TEXT NOT NULL REFERENCES runs(run_id)
    );
    CREATE INDEX units_by_run ON units(last_run_id, transcript_id, start);
    CREATE TABLE suggestions (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        unit_id TEXT NOT NULL,
        code_id TEXT NOT NULL,
        score REAL NOT NULL,
        rank INTEGER NOT NULL,
        margin REAL NOT NULL,
        PRIMARY KEY (run_id, unit_id, code_id)
    );
    CREATE TABLE decisions (
        decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
        reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
        at TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        transcript_id TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        text TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        code_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'add', 'remove', 'note')),
        memo TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX decisions_by_unit ON decisions(unit_id, decision_id);
    CREATE TRIGGER decisions_are_append_only_u BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_are_append_only_d BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    """,
    # 2: where a decision came from (web page, spreadsheet, QDA import) and reviewer lookups.
    """
    ALTER TABLE decisions ADD COLUMN source TEXT NOT NULL DEFAULT 'web';
    CREATE INDEX decisions_by_reviewer ON decisions(reviewer, decision_id);
    """,
    # 3: a trained coder's probability beside the zero-shot score.
    """
    ALTER TABLE suggestions ADD COLUMN probability REAL;
    """,
    # 4: privacy: people's "false alarm" marks (append-only) and a cache of scans.
    """
    CREATE TABLE privacy_false_alarms (
        mark_id INTEGER PRIMARY KEY AUTOINCREMENT,
        transcript_id TEXT NOT NULL,
        text TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT '',
        reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
        at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE privacy_scans (
        transcript_sha256 TEXT NOT NULL,
        config TEXT NOT NULL,
        findings TEXT NOT NULL,
        PRIMARY KEY (transcript_sha256, config)
    );
    """,
    # 5: a team's accounts (served page), their login sessions, and an audit of exports.
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('lead', 'reviewer', 'reader')),
        password_hash TEXT NOT NULL,
        blind INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE TABLE login_sessions (
        session_sha256 TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts(name),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE audit_events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 6: "done", a reviewer's mark that a whole unit is reviewed (see pipeline.decisions). SQLite
    # cannot widen a CHECK in place, so the table is copied whole, ids included, in one
    # transaction; indexes and the append-only triggers are made again.
    """
    CREATE TABLE decisions_v5 (
        decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
        reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
        at TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        transcript_id TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        text TEXT NOT NULL,
        text_sha256 TEXT NOT NULL,
        code_id TEXT NOT NULL,
        action TEXT NOT NULL
            CHECK (action IN ('accept', 'reject', 'add', 'remove', 'note', 'done')),
        memo TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'web'
    );
    INSERT INTO decisions_v5 (decision_id, reviewer, at, unit_id, transcript_id, start, "end",
        text, text_sha256, code_id, action, memo, source)
        SELECT decision_id, reviewer, at, unit_id, transcript_id, start, "end", text,
        text_sha256, code_id, action, memo, source FROM decisions ORDER BY decision_id;
    DROP TABLE decisions;
    ALTER TABLE decisions_v5 RENAME TO decisions;
    CREATE INDEX decisions_by_unit ON decisions(unit_id, decision_id);
    CREATE INDEX decisions_by_reviewer ON decisions(reviewer, decision_id);
    CREATE TRIGGER decisions_are_append_only_u BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_are_append_only_d BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    """,
    # 7: units and suggestions kept per version of a transcript (its results key: text,
    # settings, codebook, model and coder), not per run. A run lists the version of each
    # transcript it coded; an edit writes the edited transcript's rows only, where every run
    # used to store every suggestion again and move every unit to itself (224,000 and
    # 260,000 rows at 7,000 pages). Each earlier run becomes one version of its own
    # ('run:' + its id), so its units and suggestions read back as before.
    """
    CREATE TABLE run_transcripts (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        transcript_id TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (run_id, transcript_id)
    );
    CREATE INDEX run_transcripts_by_version ON run_transcripts(version);
    CREATE TABLE suggestions_v7 (
        version TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        code_id TEXT NOT NULL,
        score REAL NOT NULL,
        rank INTEGER NOT NULL,
        margin REAL NOT NULL,
        probability REAL,
        PRIMARY KEY (version, unit_id, code_id)
    );
    INSERT INTO run_transcripts (run_id, transcript_id, version)
        SELECT run_id, '', 'run:' || run_id FROM runs;
    INSERT INTO suggestions_v7 (version, unit_id, code_id, score, rank, margin, probability)
        SELECT 'run:' || run_id, unit_id, code_id, score, rank, margin, probability
        FROM suggestions;
    DROP TABLE suggestions;
    ALTER TABLE suggestions_v7 RENAME TO suggestions;
    ALTER TABLE units ADD COLUMN version TEXT NOT NULL DEFAULT '';
    UPDATE units SET version = 'run:' || last_run_id;
    DROP INDEX units_by_run;
    CREATE INDEX units_by_version ON units(version, transcript_id, start);
    CREATE INDEX units_by_transcript ON units(transcript_id, start);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class NewDecision:
    """A reviewer's judgement on one code of one unit, before it is stored."""

    unit_id: str
    code_id: str
    action: str  # accept | reject | add | remove | note
    memo: str = ""


# The units table's own columns, as a run's units frame names them.
UNIT_COLUMNS = (
    "unit_id",
    "transcript_id",
    "turn_index",
    "speaker",
    "speaker_kind",
    "start",
    "end",
    "text",
    "codable",
    "role",
    "local_authority",
    "workstream",
    "network",
    "top_code",
    "top_score",
)


def location(value: str | Path) -> str | Path:
    """A ``--store`` value as the store opens it: a PostgreSQL URL stays text (a ``Path`` would
    fold its ``//``), anything else is a file path."""
    return str(value) if is_url(value) else Path(value)


def run_store(store: str | Path | None, out_dir: Path) -> str | Path:
    """The project store of a run into ``out_dir``: ``--store``, else ``project.sqlite`` there."""
    return location(store or Path(out_dir) / "project.sqlite")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Store:
    """The project database. Open once per process; safe for several processes at once."""

    def __init__(self, path: str | Path, migrate: bool = True, pooled: bool = False):
        """``pooled``: (PostgreSQL) borrow the connection from the process's pool, for a
        long-running process that opens a store per request (the review page)."""
        self.url = str(path) if is_url(path) else None
        if self.url is not None:
            self._open_postgresql(self.url, migrate, pooled)
            return
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            version = self.schema_version
        except sqlite3.DatabaseError as error:
            raise StoreError(f"not a qcode project database ({error})", self.path) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"this project was written by a newer qcode (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade qcode",
                self.path,
            )
        if migrate:
            self.migrate()

    def _open_postgresql(self, url: str, migrate: bool, pooled: bool = False) -> None:
        import psycopg

        from pipeline.store_pg import connect

        self.path = shown(url)  # type: ignore[assignment]  # for messages: never the password
        try:
            self.db = connect(url, pooled)  # type: ignore[assignment]
            version = self.schema_version
        except psycopg.Error as error:
            raise StoreError(
                f"cannot open the project database ({error})".strip(), self.path
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"this project was written by a newer qcode (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade qcode",
                self.path,
            )
        if migrate:
            self.migrate()

    @property
    def backend(self) -> str:
        return "postgresql" if self.url is not None else "sqlite"

    @property
    def schema_version(self) -> int:
        if self.url is not None:
            return self.db.schema_version()
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, to: int = SCHEMA_VERSION) -> None:
        """Apply the missing migrations, each in its own transaction."""
        while self.schema_version < to:
            step = self.schema_version
            with self.write() as db:
                if self.schema_version != step:
                    continue  # another process applied it while we waited for the lock
                for statement in _statements(MIGRATIONS[step]):
                    if self.url is None:
                        db.execute(statement)
                    else:
                        for translated in migration_statements(statement):
                            db.execute(translated)
                if self.url is None:
                    db.execute(f"PRAGMA user_version = {step + 1}")
                else:
                    db.set_schema_version(step + 1)
            if self.url is not None:
                self.db.forget_catalogue()

    @contextmanager
    def write(self, units: list[str] | None = None) -> Iterator[sqlite3.Connection]:
        """The one write path: all of the block is committed, or none of it.

        ``units``: (PostgreSQL) the block only appends decisions on these units, so it waits for
        other writers to the same units only, not for a run being recorded (SQLite has one lock).
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.url is not None:
                self.db.lock_for_writing(units)
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def record_run(
        self,
        manifest: dict,
        transcripts: list[Transcript],
        units: pd.DataFrame,
        suggestions: pd.DataFrame,
        codebook: Codebook,
        versions: dict[str, str] | None = None,
    ) -> None:
        """Store one run: its transcripts' current text, its units and its suggestions.

        ``versions``: each transcript's results key (``pipeline.incremental``), which fixes its
        text, units and suggestions. A transcript whose version is the one the latest run had
        is only listed for this run: nothing of it is written again. Suggestions of a version
        any earlier run stored are not written again either. Without ``versions`` every
        transcript is a new version (everything is written)."""
        stamp = now()
        run_id = manifest["run_id"]
        content = codebook.model_dump_json(exclude={"path"})
        if versions is None:
            ids = [t.transcript_id for t in transcripts] + units["transcript_id"].tolist()
            versions = {t: f"{run_id}:{t}" for t in dict.fromkeys(ids)}
        with self.write() as db:
            previous = self.latest_run_id()
            before = dict(
                db.execute(
                    "SELECT transcript_id, version FROM run_transcripts WHERE run_id = ?",
                    (previous,),
                )
            )
            changed = {t for t, v in versions.items() if before.get(t) != v}
            db.execute(
                "INSERT OR IGNORE INTO codebooks VALUES (?, ?, ?, ?)",
                (codebook.sha256, codebook.name, content, stamp),
            )
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                (
                    run_id,
                    stamp,
                    codebook.sha256,
                    json.dumps(manifest.get("model", {})),
                    json.dumps(manifest),
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO transcripts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        t.transcript_id,
                        t.source_path,
                        t.format,
                        t.sha256,
                        t.text,
                        json.dumps(t.attributes),
                        json.dumps(t.participants),
                        stamp,
                    )
                    for t in transcripts
                    if t.transcript_id in changed
                ],
            )
            db.executemany(
                "INSERT INTO run_transcripts (run_id, transcript_id, version) VALUES (?, ?, ?)",
                [(run_id, t, v) for t, v in versions.items()],
            )
            new_units = units[units["transcript_id"].isin(changed).to_numpy()]
            _record_units(db, new_units, run_id, versions)
            _record_suggestions(db, run_id, units, suggestions, versions)

    def latest_run_id(self) -> str | None:
        row = self.db.execute(
            "SELECT run_id FROM runs ORDER BY finished_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def codebook(self, run_id: str | None = None) -> Codebook:
        run_id = run_id or self.latest_run_id()
        row = self.db.execute(
            "SELECT c.content FROM runs r JOIN codebooks c ON c.sha256 = r.codebook_sha256 "
            "WHERE r.run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StoreError("the project has no runs yet: run 'qcode run' first", self.path)
        return Codebook.model_validate_json(row[0])

    def manifest(self, run_id: str | None = None) -> dict:
        row = self.db.execute(
            "SELECT manifest FROM runs WHERE run_id = ?", (run_id or self.latest_run_id(),)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    # -- reading ------------------------------------------------------------------------------

    def units(self, run_id: str | None = None) -> pd.DataFrame:
        """Units of a run (default: the latest), in reading order: those of each transcript's
        version (a unit a later run changed reads back as it is now)."""
        frame = read_frame(
            "SELECT u.* FROM run_transcripts r JOIN units u ON u.version = r.version"
            " WHERE r.run_id = ? ORDER BY u.transcript_id, u.start",
            self.db,
            params=(run_id or self.latest_run_id(),),
        )
        frame["codable"] = frame["codable"].astype(bool)
        return frame.drop(columns=["last_run_id", "version"])

    def suggestions(self, run_id: str | None = None) -> pd.DataFrame:
        """Suggestions of a run (default: the latest): those of each transcript's version."""
        return read_frame(
            "SELECT s.unit_id, s.code_id, s.score, s.rank, s.margin FROM run_transcripts r"
            " JOIN suggestions s ON s.version = r.version WHERE r.run_id = ?"
            " ORDER BY s.unit_id, s.code_id",
            self.db,
            params=(run_id or self.latest_run_id(),),
        )

    def transcript_texts(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT transcript_id, text FROM transcripts"))

    def transcript_attributes(self) -> dict[str, tuple[dict, dict]]:
        return {
            tid: (json.loads(a), json.loads(p))
            for tid, a, p in self.db.execute(
                "SELECT transcript_id, attributes, participants FROM transcripts"
            )
        }

    def decisions(self, reviewer: str | None = None, after: int = 0) -> pd.DataFrame:
        """Decisions in the order they were made; ``after``: only those with a larger id (the
        review page resolves only decisions it has not seen)."""
        query = "SELECT * FROM decisions WHERE decision_id > ?"
        params: tuple = (after,)
        if reviewer is not None:
            query += " AND reviewer = ?"
            params = (after, reviewer)
        return read_frame(query + " ORDER BY decision_id", self.db, params=params)

    def decision_count(self, up_to: int | None = None) -> int:
        """How many decisions there are (with an id up to ``up_to``): a cache of decisions read
        earlier checks with it that none was committed out of id order meanwhile."""
        if up_to is None:
            return int(self.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
        # All minus the few above ``up_to``: SQLite counts a whole table from its smallest
        # index in microseconds, but walks the table's pages for a range (13 ms at 50,000).
        return int(
            self.db.execute(
                "SELECT (SELECT COUNT(*) FROM decisions)"
                " - (SELECT COUNT(*) FROM decisions WHERE decision_id > ?)",
                (up_to,),
            ).fetchone()[0]
        )

    def resolved_decisions(self, codebook: Codebook | None = None) -> pd.DataFrame:
        """All decisions anchored to the latest run's units (see ``pipeline.decisions``)."""
        decisions, units = self.decisions(), self.units()
        current = set(units["unit_id"].tolist())
        earlier = self.earlier_units_of(decisions, current, self.latest_run_id())
        return resolve_anchors(
            decisions,
            units,
            self.transcript_texts(),
            codebook or self.codebook(),
            earlier,
            current_ids=current,
        )

    def earlier_units_of(
        self, decisions: pd.DataFrame, current: set[str], but_run: str | None = None
    ) -> pd.DataFrame:
        """``earlier_units`` of the transcripts of decisions whose unit is not ``current``
        (the ids of the units they are anchored to now): all anchoring needs to read."""
        lost = [
            tid
            for uid, tid in zip(
                decisions["unit_id"].tolist(), decisions["transcript_id"].tolist(), strict=True
            )
            if uid not in current
        ]
        return self.earlier_units(but_run, lost)

    def earlier_units(
        self, but_run: str | None = None, transcripts: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Stored units not in run ``but_run`` (None: all), with the version of their
        transcript each was last in: where a moved decision's neighbours were
        (``pipeline.decisions.resolve_anchors``). ``transcripts``: only these transcripts'."""
        query = 'SELECT unit_id, transcript_id, start, "end", text, version FROM units'
        where, params = [], []
        if but_run is not None:
            where.append("version NOT IN (SELECT version FROM run_transcripts WHERE run_id = ?)")
            params.append(but_run)
        if transcripts is not None:
            chosen = sorted(set(transcripts))
            if not chosen:
                return read_frame(query + " WHERE 0 = 1", self.db)
            where.append(f"transcript_id IN ({', '.join('?' * len(chosen))})")
            params += chosen
        if where:
            query += " WHERE " + " AND ".join(where)
        return read_frame(query, self.db, params=tuple(params))

    def reviewers(self) -> list[str]:
        return [
            r[0]
            for r in self.db.execute("SELECT DISTINCT reviewer FROM decisions ORDER BY reviewer")
        ]

    def unit_version(self, unit_id: str, reviewer: str | None = None) -> int:
        """Id of the newest decision on a unit (0 if none): pages and sheets carry it back."""
        if reviewer is None:
            row = self.db.execute(
                "SELECT MAX(decision_id) FROM decisions WHERE unit_id = ?", (unit_id,)
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT MAX(decision_id) FROM decisions WHERE unit_id = ? AND reviewer = ?",
                (unit_id, reviewer),
            ).fetchone()
        return int(row[0] or 0)

    # -- writing decisions --------------------------------------------------------------------

    def decide(
        self,
        reviewer: str,
        decisions: list[NewDecision],
        source: str = "web",
        expected_versions: dict[str, int] | None = None,
        version_reviewer: str | None = None,
    ) -> list[int]:
        """Append decisions in one transaction; refuse all if a unit changed meanwhile.

        ``expected_versions`` maps unit ids to the ``unit_version`` the reviewer saw;
        ``version_reviewer`` limits that check to one reviewer's decisions (blind coding).
        """
        reviewer = reviewer.strip()
        if not reviewer:
            raise StoreError("a decision needs a reviewer name")
        for d in decisions:
            if d.action not in ACTIONS:
                raise StoreError(f"'{d.action}' is not a decision (use one of {ACTIONS})")
        stamp = now()
        ids: list[int] = []
        touched = sorted({d.unit_id for d in decisions} | set(expected_versions or {}))
        with self.write(units=touched) as db:
            for unit_id, seen in (expected_versions or {}).items():
                current = self.unit_version(unit_id, version_reviewer)
                if current != seen:
                    raise StaleUnitError(
                        f"unit {unit_id} was changed by someone else after you opened it; "
                        "reload to see their decision before adding yours"
                    )
            for d in decisions:
                unit = db.execute(
                    'SELECT transcript_id, start, "end", text FROM units WHERE unit_id = ?',
                    (d.unit_id,),
                ).fetchone()
                if unit is None:
                    raise StoreError(f"unit {d.unit_id} is not in this project")
                cursor = db.execute(
                    'INSERT INTO decisions (reviewer, at, unit_id, transcript_id, start, "end",'
                    " text, text_sha256, code_id, action, memo, source)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        reviewer,
                        stamp,
                        d.unit_id,
                        unit[0],
                        unit[1],
                        unit[2],
                        unit[3],
                        text_sha(unit[3]),
                        d.code_id,
                        d.action,
                        d.memo,
                        source,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids


class PrivacyMarks:
    """People's false-alarm marks and cached scans, kept in the project store."""

    def __init__(self, store: Store):
        self.store = store

    def mark_false_alarm(
        self, reviewer: str, text: str, transcript_id: str = "*", kind: str = "", note: str = ""
    ) -> None:
        """Record that ``text`` is not personal data (in one interview, or ``*`` in all)."""
        if not reviewer.strip():
            raise StoreError("a false-alarm mark needs the name of the person making it")
        with self.store.write() as db:
            db.execute(
                "INSERT INTO privacy_false_alarms (transcript_id, text, kind, reviewer, at, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (transcript_id, text, kind, reviewer.strip(), now(), note),
            )

    def false_alarms(self) -> set[tuple[str, str]]:
        return set(self.store.db.execute("SELECT transcript_id, text FROM privacy_false_alarms"))

    def marks(self) -> pd.DataFrame:
        return read_frame("SELECT * FROM privacy_false_alarms ORDER BY mark_id", self.store.db)

    def cached_scan(self, sha256: str, config: str) -> list[dict] | None:
        row = self.store.db.execute(
            "SELECT findings FROM privacy_scans WHERE transcript_sha256 = ? AND config = ?",
            (sha256, config),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def forget_other_scans(self, config: str) -> None:
        """Drop cached scans made under another configuration (older ones kept text)."""
        if self.store.db.execute(
            "SELECT 1 FROM privacy_scans WHERE config != ? LIMIT 1", (config,)
        ).fetchone():
            with self.store.write() as db:
                db.execute("DELETE FROM privacy_scans WHERE config != ?", (config,))

    def save_scan(self, sha256: str, config: str, findings: list[dict]) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO privacy_scans VALUES (?, ?, ?)",
                (sha256, config, json.dumps(findings)),
            )


def read_frame(sql: str, db: object, params: tuple = ()) -> pd.DataFrame:
    """``pd.read_sql_query`` on either backend (pandas reads only sqlite3 connections as such)."""
    if isinstance(db, sqlite3.Connection):
        return pd.read_sql_query(sql, db, params=params)
    cursor = db.execute(sql, params)  # type: ignore[attr-defined]
    columns = [c.name for c in cursor.description]
    return pd.DataFrame.from_records(cursor.fetchall(), columns=columns, coerce_float=True)


def _record_units(db: Any, rows: pd.DataFrame, run_id: str, versions: dict[str, str]) -> None:
    """Upsert the units of the transcripts whose version changed, with that version.

    A transcript whose version is the latest run's keeps its rows as they are: the same
    version means the same units. Units a new version lacks keep their old version; they are
    what ``earlier_units`` returns (where a moved decision's neighbours were)."""
    if rows.empty:
        return
    columns = list(UNIT_COLUMNS)
    rows = rows.reindex(columns=columns).assign(
        version=rows["transcript_id"].map(versions).to_numpy(), last_run_id=run_id
    )
    names = ", ".join(_q(c) for c in rows.columns)
    db.executemany(
        f"INSERT OR REPLACE INTO units ({names}) VALUES ({', '.join('?' * rows.shape[1])})",
        _plain_rows(rows),
    )


def _record_suggestions(
    db: Any,
    run_id: str,
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    versions: dict[str, str],
) -> None:
    """Write the suggestions of the versions no earlier run stored (see migration 7)."""
    listed = list(set(versions.values()))
    stored: set[str] = set()
    for start in range(0, len(listed), 500):
        part = listed[start : start + 500]
        rows = db.execute(
            "SELECT DISTINCT version FROM run_transcripts WHERE run_id != ? AND version IN"
            f" ({', '.join('?' * len(part))})",
            (run_id, *part),
        )
        stored.update(row[0] for row in rows)
    new = {t: v for t, v in versions.items() if v not in stored}
    if not new or suggestions.empty:
        return
    transcripts = (
        suggestions["transcript_id"]
        if "transcript_id" in suggestions.columns
        else suggestions["unit_id"].map(units.set_index("unit_id")["transcript_id"])
    )
    mask = transcripts.isin(new.keys()).to_numpy()
    names = ["unit_id", "code_id", "score", "rank", "margin", "probability"]
    floats = {c: "float64" for c in ("score", "margin", "probability")}
    rows = (
        suggestions[mask]
        .reindex(columns=names)
        .astype({"rank": "int64", **floats})
        .assign(version=pd.Series(transcripts.to_numpy()[mask]).map(new).to_numpy())
    )
    db.executemany(
        "INSERT INTO suggestions (unit_id, code_id, score, rank, margin, probability,"
        " version) VALUES (?, ?, ?, ?, ?, ?, ?)",
        _plain_rows(rows),
    )


def _q(column: str) -> str:
    return f'"{column}"'


def _plain_rows(frame: pd.DataFrame, chunk: int = 20_000) -> Iterator[tuple]:
    """The frame's rows as tuples of plain Python values (missing -> None), made a chunk of
    rows at a time, column by column: pandas' row iterators visit each value of an
    Arrow-backed text column one at a time (over a second of an edit run at 700 pages), and a
    list of every row at 7,000 pages took ~300 MB."""
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        columns = []
        for name in part.columns:
            values = part[name].tolist()  # Python scalars
            missing = part[name].isna()
            if missing.any():
                values = [None if m else v for v, m in zip(values, missing.tolist(), strict=True)]
            columns.append(values)
        yield from zip(*columns, strict=True)


def _statements(script: str) -> list[str]:
    """Split a migration into statements; triggers keep their inner semicolons."""
    statements, buffer = [], ""
    for line in script.splitlines():
        buffer += line + "\n"
        stripped = buffer.strip()
        inside_trigger = stripped.upper().startswith(
            "CREATE TRIGGER"
        ) and not stripped.upper().endswith("END;")
        if stripped.endswith(";") and not inside_trigger:
            statements.append(stripped)
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
