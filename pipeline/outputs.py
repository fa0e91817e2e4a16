"""Outputs: write one run's files under ``outputs/<run id>/``, all or nothing.

Everything is written into a hidden temporary folder first and moved into place in one rename,
so a run that crashes or is killed never leaves a half-written run folder behind (a killed run's
hidden folder is removed by the next run).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline import __version__
from pipeline.codebook import Codebook
from pipeline.errors import Problem
from pipeline.ingest import Transcript
from pipeline.paths import safe_file_stem
from pipeline.report.summaries import with_draft_marker
from pipeline.settings import Settings


def new_run_id(
    transcripts: list[Transcript], codebook: Codebook, settings: Settings, model_fingerprint: str
) -> str:
    """Time-ordered and content-tagged: ``20261123T151500Z-3fa2c1``."""
    digest = hashlib.sha256()
    for t in transcripts:
        digest.update(t.sha256.encode())
    digest.update(codebook.sha256.encode())
    digest.update(settings.model_dump_json().encode())
    digest.update(model_fingerprint.encode())
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{digest.hexdigest()[:6]}"


def folder_fingerprint(folder: Path | None) -> str:
    """Hash of every file in a folder (names and bytes); '' for None."""
    if folder is None:
        return ""
    digest = hashlib.sha256()
    base = Path(folder)
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(base)).encode() + b"\x00")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """Hash of qcode's own code and templates (all of pipeline/ and flows/ but the review page,
    which no run uses): a changed qcode never reuses an old run."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(__version__.encode())
    for folder in ("pipeline", "flows"):
        for path in sorted((root / folder).rglob("*")):
            relative = path.relative_to(root)
            if path.suffix in {".py", ".j2"} and relative.parts[:2] != ("pipeline", "review"):
                digest.update(str(relative).encode() + b"\x00")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def inputs_key(
    transcripts: list[Transcript],
    problems: list[Problem],
    codebook: Codebook,
    settings: Settings,
    model_fingerprint: str,
    store_state: str,
) -> str:
    """Everything a run's outputs depend on, hashed: the same key gives the same outputs.

    Transcripts (ids, paths, content), skipped files and warnings, the codebook, every
    setting, the model and precision, the trained coder and template folders, qcode's own
    code, and the reviewers' decisions in the store (``store_state``).
    """
    digest = hashlib.sha256()
    parts = [
        code_fingerprint(),
        codebook.sha256,
        settings.model_dump_json(),
        model_fingerprint,
        folder_fingerprint(settings.classifier),
        folder_fingerprint(settings.template_dir),
        store_state,
        *(str(p) for p in problems),
    ]
    parts += [f"{t.transcript_id}\x00{t.source_path}\x00{t.sha256}" for t in transcripts]
    for part in parts:
        digest.update(part.encode() + b"\x01")
    return digest.hexdigest()


def reusable_run(out_root: Path, key: str, store_latest: str | None) -> Path | None:
    """The newest run in ``out_root`` if it was made from exactly these inputs (same
    ``inputs_key``) and is still the project store's latest run; else None."""
    latest = out_root / "LATEST"
    if not latest.is_file():
        return None
    run_id = latest.read_text(encoding="utf-8").strip()
    manifest_path = out_root / run_id / "manifest.json"
    if not run_id or run_id != store_latest or not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return out_root / run_id if manifest.get("inputs_key") == key else None


@functools.lru_cache(maxsize=4096)
def word_count(text: str) -> int:
    """Words in a transcript, remembered by text: a watching process counted every
    transcript again after each edit (0.15 s at 7,000 pages)."""
    return len(text.split())


def build_manifest(
    run_id: str,
    started_at: datetime,
    transcripts: list[Transcript],
    problems: list[Problem],
    codebook: Codebook,
    settings: Settings,
    model: dict[str, str],
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    timings: dict[str, float],
    newly_embedded: int,
) -> dict:
    per_transcript = units.groupby("transcript_id").size().to_dict() if len(units) else {}
    coded_units = suggestions["unit_id"].nunique() if len(suggestions) else 0
    return {
        "run_id": run_id,
        "qcode_version": __version__,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": [
            {
                "transcript_id": t.transcript_id,
                "path": t.source_path,
                "format": t.format,
                "layout": t.layout,
                "text_file": f"transcripts/{safe_file_stem(t.transcript_id)}.txt",
                "sha256": t.sha256,
                "turns": len(t.turns),
                "units": int(per_transcript.get(t.transcript_id, 0)),
                "words": word_count(t.text),
            }
            for t in transcripts
        ],
        "skipped": [str(p) for p in problems if p.severity == "skipped"],
        "warnings": [str(p) for p in problems if p.severity != "skipped"],
        "codebook": {
            "path": codebook.path,
            "name": codebook.name,
            "version": codebook.version,
            "sha256": codebook.sha256,
            "codes": len(codebook.codes),
        },
        "model": model,
        "settings": json.loads(settings.model_dump_json()),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "counts": {
            "transcripts": len(transcripts),
            "skipped": sum(p.severity == "skipped" for p in problems),
            "units": len(units),
            "codable_units": int(units["codable"].sum()) if len(units) else 0,
            "coded_units": int(coded_units),
            "suggestions": len(suggestions),
            "newly_embedded": newly_embedded,
        },
    }


PARTIAL_RUN = re.compile(r"^\.\d{8}T\d+Z-[0-9a-f]{6}\.partial$")
OWNER = ".owner"  # inside a run's hidden staging folder: "<host> <process id>"


def _alive(owner: Path) -> bool:
    """Is the process that is writing this staging folder still running (on this machine)?"""
    try:
        host, pid = owner.read_text(encoding="utf-8").split()
        if host != socket.gethostname():
            return True  # another machine's run: not ours to judge
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # alive, another user's
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        # No owner (or unreadable): left by a killed run, unless just made by a run that is
        # about to write its owner file.
        return time.time() - owner.parent.stat().st_mtime < 60
    return True


def clean_partial_runs(out_root: Path) -> list[str]:
    """Remove hidden, half-written run folders (``.<run id>.partial``) that a killed run left
    behind; a run still writing one (its process alive) keeps it. Returns the names removed."""
    removed = []
    if not out_root.is_dir():
        return removed
    for folder in out_root.iterdir():
        if PARTIAL_RUN.match(folder.name) and folder.is_dir() and not _alive(folder / OWNER):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def write_run(
    out_root: Path,
    run_id: str,
    transcripts: list[Transcript],
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    manifest: dict,
    render: Callable[[Path], object] | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
    before_commit: Callable[[], object] | None = None,
    write_csv: Callable[[str, pd.DataFrame, Path], object] | None = None,
) -> Path:
    """Write the run folder atomically.

    ``render(summaries_dir)`` writes the summaries; ``tables`` are more tables to write as CSV
    and Parquet; ``before_commit()`` runs once everything is written, just before the folder
    is moved into place (the flow records the run in the project store there), so a failure in
    either leaves neither. ``write_csv(name, frame, path)`` writes a table's CSV (default
    ``frame.to_csv``; the flow's reuses unchanged transcripts' rows, ``incremental.CsvParts``).
    """
    out_root.mkdir(parents=True, exist_ok=True)
    clean_partial_runs(out_root)
    final = out_root / run_id
    staging = out_root / f".{run_id}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        (staging / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}", encoding="utf-8")
        text_dir = staging / "transcripts"
        text_dir.mkdir()
        for t in transcripts:
            # The plain text all offsets point into (for .docx and .vtt: the extracted text).
            with open(
                text_dir / f"{safe_file_stem(t.transcript_id)}.txt",
                "w",
                encoding="utf-8",
                newline="",
            ) as handle:
                handle.write(t.text)
        # The Parquet copies are written on a second thread while this one writes the CSVs
        # and the summaries: Arrow encodes and compresses without holding Python's lock, so
        # on two cores their 1.5 s at 7,000 pages no longer adds to a run.
        with ThreadPoolExecutor(1, thread_name_prefix="parquet") as parquet:
            written = []
            tables = {"units": units, "suggestions": suggestions, **(tables or {})}
            for name, frame in tables.items():
                # A CSV opened on its own says it is a draft on every row (column ``draft``);
                # the Parquet copy is data for programs and stays as it is.
                path = staging / f"{name}.parquet"
                written.append(parquet.submit(frame.to_parquet, path, index=False))
                marked = with_draft_marker(frame)
                if write_csv is None:
                    marked.to_csv(staging / f"{name}.csv", index=False)
                else:
                    write_csv(name, marked, staging / f"{name}.csv")
            if render is not None:
                render(staging / "summaries")
            for future in written:
                future.result()  # a failed write fails the run here
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if before_commit is not None:
            before_commit()
        (staging / OWNER).unlink()
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (out_root / "LATEST").write_text(run_id + "\n", encoding="utf-8")
    return final


def read_store_state(path: Path | str) -> tuple[str, str | None]:
    """(what reviewers have done, the latest run id) in a project store, read-only and cheap:
    the count and newest id of each append-only table of people's input. Part of a run's
    inputs key: a new decision means the run's outputs no longer stand."""
    from pipeline.store_pg import is_url

    if is_url(path):
        return _read_postgresql_state(str(path))
    path = Path(path)
    if not path.is_file():
        return "", None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        parts = []
        for table in sorted(tables & {"decisions", "privacy_false_alarms"}):
            count, newest = db.execute(f"SELECT COUNT(*), MAX(rowid) FROM {table}").fetchone()
            if count:  # an empty table reads as no store at all
                parts.append(f"{table}:{count}:{newest}")
        latest = None
        if "runs" in tables:
            row = db.execute(
                "SELECT run_id FROM runs ORDER BY finished_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
            latest = row[0] if row else None
        return ";".join(parts), latest
    except sqlite3.DatabaseError:
        return "unreadable", None
    finally:
        db.close()


def _read_postgresql_state(url: str) -> tuple[str, str | None]:
    """``read_store_state`` for a PostgreSQL store (the same parts: ids are the tables' keys,
    as SQLite's rowid is)."""
    from pipeline.store import SCHEMA_VERSION, Store

    with Store(url, migrate=False) as store:
        if store.schema_version < SCHEMA_VERSION:
            store.migrate()  # a new database: the run would create the tables anyway
        parts = []
        for table, key in (("decisions", "decision_id"), ("privacy_false_alarms", "mark_id")):
            count, newest = store.db.execute(f"SELECT COUNT(*), MAX({key}) FROM {table}").fetchone()
            if count:
                parts.append(f"{table}:{count}:{newest}")
        return ";".join(parts), store.latest_run_id()


def orphans_line(review: dict, run_dir: Path) -> str:
    """The closing summary's line on decisions that no longer attach to a unit ("" if none)."""
    orphaned = int(review.get("orphaned_decisions", 0))
    if not orphaned:
        return ""
    waiting = int(review.get("decisions_to_confirm", 0))
    one = orphaned == 1
    return (
        f"{orphaned} reviewer{chr(39) + 's' if one else 's' + chr(39)} decision"
        f"{'' if one else 's'} no longer attach{'es' if one else ''} to a unit (text or code "
        "gone" + (f"; {waiting} moved — confirm" if waiting else "") + "): kept, not applied; "
        f"see 'qcode orphans' or {run_dir / 'orphaned_decisions.csv'}"
    )
