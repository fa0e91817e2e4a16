"""Outputs: write one run's files under ``outputs/<run id>/``, all or nothing.

Everything is written into a hidden temporary folder first and moved into place in one rename,
so a run that crashes or is killed never leaves a half-written run folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline import __version__
from pipeline.codebook import Codebook
from pipeline.errors import Problem
from pipeline.ingest import Transcript
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
                "sha256": t.sha256,
                "turns": len(t.turns),
                "units": int(per_transcript.get(t.transcript_id, 0)),
                "words": len(t.text.split()),
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
) -> Path:
    """Write the run folder atomically.

    ``render(summaries_dir)`` writes the summaries; ``tables`` are more tables to write as CSV
    and Parquet; ``before_commit()`` runs once everything is written, just before the folder
    is moved into place (the flow records the run in the project store there), so a failure in
    either leaves neither.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / run_id
    staging = out_root / f".{run_id}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        text_dir = staging / "transcripts"
        text_dir.mkdir()
        for t in transcripts:
            # The plain text all offsets point into (for .docx and .vtt: the extracted text).
            with open(
                text_dir / f"{t.transcript_id}.txt", "w", encoding="utf-8", newline=""
            ) as handle:
                handle.write(t.text)
        for name, frame in {"units": units, "suggestions": suggestions, **(tables or {})}.items():
            frame.to_csv(staging / f"{name}.csv", index=False)
            frame.to_parquet(staging / f"{name}.parquet", index=False)
        if render is not None:
            render(staging / "summaries")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if before_commit is not None:
            before_commit()
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (out_root / "LATEST").write_text(run_id + "\n", encoding="utf-8")
    return final
