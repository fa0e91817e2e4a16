"""Incremental runs: a transcript that has not changed is not segmented, embedded or coded again.

Each transcript's units and suggestions are kept in the cache folder under a key made of
everything they depend on: the transcript as coded (after the anonymity check's redaction: its
text, turns, attributes and ids), every setting, the codebook, the model, the trained coder and
qcode's own code. A run takes the units and suggestions of unchanged transcripts from there and
computes only the rest; together they are the tables a full run computes, row for row and bit
for bit (scores are computed in float64, see ``assign.score_matrix``), so the outputs are the
same (``tests/test_incremental.py`` compares every file). What is kept is what the run's own
outputs hold: the redacted text and participants' attributes, never names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook
from pipeline.ingest import Transcript
from pipeline.outputs import code_fingerprint, folder_fingerprint
from pipeline.settings import Settings

FORMAT = 1  # bump when what is kept changes


def run_key(settings: Settings, codebook: Codebook, model_fingerprint: str) -> str:
    """What every transcript's results depend on besides the transcript itself."""
    parts = [
        str(FORMAT),
        code_fingerprint(),
        codebook.sha256,
        settings.model_dump_json(),
        model_fingerprint,
        folder_fingerprint(settings.classifier),
    ]
    return hashlib.sha256("\x01".join(parts).encode()).hexdigest()


def transcript_key(transcript: Transcript, base: str) -> str:
    """``base`` (``run_key``) and the transcript as it is coded."""
    return hashlib.sha256(f"{base}\x00{_digest(transcript)}".encode()).hexdigest()


def remember_digests(transcripts: list[Transcript]) -> None:
    """Hash these transcripts now, for the next run in this process (a watching process calls
    it while it waits: its first run reused the last one and hashed nothing, so its first edit
    hashed every transcript, 0.5 s at 7,000 pages)."""
    for transcript in transcripts:
        _digest(transcript)


def _digest(transcript: Transcript) -> str:
    kept = _DIGESTS.get(id(transcript))
    if kept is None or kept[0]() is not transcript:
        kept = (weakref.ref(transcript), _transcript_digest(transcript))
        _remember(_DIGESTS, id(transcript), kept)
    return kept[1]


def _transcript_digest(transcript: Transcript) -> str:
    """A hash of every field, as JSON: the payload ``dataclasses.asdict`` would give (so keys
    made before stay valid), built without its deep copy, which took two thirds of the time
    (1.5 s for 816 transcripts at 7,000 pages, paid in a cold run and a watching process's
    first edit)."""
    fields = {name: getattr(transcript, name) for name in _TRANSCRIPT_FIELDS}
    fields["turns"] = [vars(turn) for turn in transcript.turns]
    fields["problems"] = [str(p) for p in transcript.problems]
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_TRANSCRIPT_FIELDS = [f.name for f in dataclasses.fields(Transcript)]

# Each transcript's digest, by object: ``ingest`` hands a watching process the same object for
# an unchanged file, and turning its turns into JSON again was a third of a second of every edit
# at 700 pages. A weak reference, checked on use, tells a reused id from the same object and
# does not keep transcripts alive (the anonymity check makes new redacted copies every run).
_DIGESTS: dict[int, tuple[weakref.ref[Transcript], str]] = {}


# Results read by this process, by key, kept in memory for the next run in the
# same process (``qcode run --watch``): reading every unchanged transcript's Parquet files
# again was over half a second of an edit at 700 pages. A key names its content exactly, so a
# kept entry is never stale; the oldest go first beyond the limit.
_IN_MEMORY: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
IN_MEMORY_LIMIT = 20_000  # transcripts


def _remember(kept: dict, key: object, value: object) -> None:
    """Keep ``value`` under ``key`` in one of this module's in-process dicts; the oldest
    entries go first beyond ``IN_MEMORY_LIMIT``."""
    kept[key] = value
    while len(kept) > IN_MEMORY_LIMIT:
        del kept[next(iter(kept))]


class TranscriptResults:
    """Units and suggestions per transcript key, as Parquet files in one folder (and, for the
    next run in this process, in memory). Callers never modify the frames they get."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.units.parquet", self.folder / f"{key}.suggestions.parquet"

    def load(self, key: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        units_path, suggestions_path = self._paths(key)
        if key in _IN_MEMORY and units_path.is_file() and suggestions_path.is_file():
            return _IN_MEMORY[key]
        try:
            found = pd.read_parquet(units_path), pd.read_parquet(suggestions_path)
        except (OSError, ValueError):
            return None  # not there, or unreadable: computed again
        _remember(_IN_MEMORY, key, found)
        return found

    def save(self, key: str, units: pd.DataFrame, suggestions: pd.DataFrame) -> None:
        """Written beside and renamed into place: a killed run leaves no half file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for frame, path in zip((units, suggestions), self._paths(key), strict=True):
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            frame.to_parquet(partial, index=False)
            os.replace(partial, path)
        _remember(_TO_READ, key, self._paths(key))

    def expect(self, keys: list[str]) -> None:
        """The next run will ask for these keys: ``keep_saved_in_memory`` reads them ahead.

        Why: a watching process whose first run reused an earlier run's outputs saved nothing,
        so its first edit read every unchanged transcript's results from disk (0.9 s at 700
        pages)."""
        for key in keys:
            if key not in _IN_MEMORY:
                _remember(_TO_READ, key, self._paths(key))


# Results this process saved, or was told the next run will need, and has not read:
# ``keep_saved_in_memory`` reads them (Parquet's own types, as ``load`` gives them) into memory.
_TO_READ: dict[str, tuple[Path, Path]] = {}


def results_keys(run_dir: Path) -> list[str]:
    """The results keys a run folder's manifest lists (none for a run before they were)."""
    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    keys = manifest.get("results_keys")
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def keep_saved_in_memory() -> None:
    """Read the results this process saved or expects (``TranscriptResults.expect``) into
    memory, for the next run of the process.

    Why: a watching process calls it while it waits after its first run; otherwise its first
    edit read every transcript's results from disk (about 1 s at 700 pages, the first edit 6.0 s
    against 5.0 s for the next)."""
    while _TO_READ:
        key = next(iter(_TO_READ))
        units_path, suggestions_path = _TO_READ.pop(key)
        try:
            frames = pd.read_parquet(units_path), pd.read_parquet(suggestions_path)
            _remember(_IN_MEMORY, key, frames)
        except (OSError, ValueError):
            continue  # gone or unreadable: the next run computes it again, as it would


def split(
    transcripts: list[Transcript], keys: dict[str, str], results: TranscriptResults
) -> tuple[dict[str, tuple[pd.DataFrame, pd.DataFrame]], list[Transcript]]:
    """(results kept for unchanged transcripts by id, the transcripts to compute)."""
    kept: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    todo: list[Transcript] = []
    for t in transcripts:
        found = results.load(keys[t.transcript_id])
        if found is None:
            todo.append(t)
        else:
            kept[t.transcript_id] = found
    return kept, todo


def save_new(
    todo: list[Transcript],
    keys: dict[str, str],
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    results: TranscriptResults,
) -> None:
    """Keep each newly computed transcript's units and suggestions."""
    unit_groups = dict(tuple(units.groupby("transcript_id", sort=False))) if len(units) else {}
    suggestion_groups = (
        dict(tuple(suggestions.groupby("transcript_id", sort=False))) if len(suggestions) else {}
    )
    for t in todo:
        tid = t.transcript_id
        results.save(
            keys[tid],
            unit_groups.get(tid, units.iloc[:0]).reset_index(drop=True),
            suggestion_groups.get(tid, suggestions.iloc[:0]).reset_index(drop=True),
        )


def assemble(
    transcripts: list[Transcript],
    kept: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All transcripts' units and suggestions in reading order, as one full run gives them."""
    if not kept:
        return units, suggestions
    new_units = dict(tuple(units.groupby("transcript_id", sort=False))) if len(units) else {}
    new_suggestions = (
        dict(tuple(suggestions.groupby("transcript_id", sort=False))) if len(suggestions) else {}
    )
    unit_parts, suggestion_parts = [], []
    for t in transcripts:
        tid = t.transcript_id
        if tid in kept:
            unit_parts.append(kept[tid][0])
            suggestion_parts.append(kept[tid][1])
        else:
            unit_parts.append(new_units.get(tid))
            suggestion_parts.append(new_suggestions.get(tid))
    template_units = next(iter(kept.values()))[0].iloc[:0] if not len(units) else units.iloc[:0]
    template_suggestions = (
        next(iter(kept.values()))[1].iloc[:0] if not len(suggestions) else suggestions.iloc[:0]
    )
    return (
        _concat([p for p in unit_parts if p is not None and len(p)], template_units),
        _concat([p for p in suggestion_parts if p is not None and len(p)], template_suggestions),
    )


def _concat(parts: list[pd.DataFrame], template: pd.DataFrame) -> pd.DataFrame:
    if not parts:
        return template.reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


class CsvParts:
    """Writes a table's CSV from each transcript's rows as CSV text kept under its transcript
    key: an edit formats only the edited transcript's rows again, the rest are copied.

    The file is the header and every transcript's rows in the frame's order, exactly what
    ``frame.to_csv(index=False)`` writes (a CSV row depends on that row's values and the
    columns' types alone; ``tests/test_incremental.py`` checks it). A part is kept per
    transcript key, table, columns and their types and pandas' version, so a part is reused
    only for the same rows formatted the same way. A full run writes its CSVs the same way.
    """

    def __init__(
        self,
        results: TranscriptResults,
        keys: dict[str, str],
        varying: dict[str, Callable[[pd.DataFrame], np.ndarray]] | None = None,
    ):
        self.results, self.keys = results, keys
        # Per table, which rows depend on more than their transcript's key (codings people
        # decided): a transcript's part is kept under its key and those rows as written.
        self.varying = varying or {}

    def write(self, name: str, frame: pd.DataFrame, path: Path) -> None:
        blocks = _transcript_blocks(frame)
        if blocks is None or any(tid not in self.keys for tid, _, _ in blocks):
            frame.to_csv(path, index=False)  # not in transcript blocks: written as a whole
            return
        layout = json.dumps(
            [FORMAT, pd.__version__, name, [[c, str(t)] for c, t in frame.dtypes.items()]]
        )
        signature = hashlib.sha256(layout.encode()).hexdigest()[:16]
        self.results.folder.mkdir(parents=True, exist_ok=True)
        salts = self._salts(name, frame, blocks)
        with open(path, "wb") as out:
            out.write(frame.iloc[:0].to_csv(index=False).encode("utf-8"))
            for tid, start, stop in blocks:
                key = self.keys[tid] + salts.get(tid, "")
                part = self.results.folder / f"{key}.{signature}.{name}.csv"
                try:
                    data = part.read_bytes()
                except OSError:
                    data = frame.iloc[start:stop].to_csv(index=False, header=False).encode("utf-8")
                    partial = part.with_name(f".{part.name}.{os.getpid()}.partial")
                    partial.write_bytes(data)
                    os.replace(partial, part)
                out.write(data)

    def _salts(
        self, name: str, frame: pd.DataFrame, blocks: list[tuple[str, int, int]]
    ) -> dict[str, str]:
        """Per transcript with rows that depend on more than its key: a digest of where those
        rows are in its block and of their values (pandas' hash of each row: one call for
        the whole table, not a CSV of each transcript's decided rows, 0.4 s at 7,000 pages)."""
        if name not in self.varying:
            return {}
        varying = self.varying[name](frame)
        rows = np.flatnonzero(varying)
        if not len(rows):
            return {}
        hashes = pd.util.hash_pandas_object(frame.iloc[rows], index=False).to_numpy()
        starts = np.array([start for _, start, _ in blocks])
        block_of = np.searchsorted(starts, rows, side="right") - 1
        salts = {}
        for b in np.unique(block_of).tolist():
            mine = block_of == b
            tid, start, _ = blocks[b]
            digest = hashlib.sha256((rows[mine] - start).astype(np.int64).tobytes())
            digest.update(hashes[mine].tobytes())
            salts[tid] = "-" + digest.hexdigest()[:16]
        return salts


def _transcript_blocks(frame: pd.DataFrame) -> list[tuple[str, int, int]] | None:
    """(transcript id, first row, row after the last) of each transcript's rows, or None if a
    transcript's rows are not all together (or there is no transcript column)."""
    if "transcript_id" not in frame.columns:
        return None
    column = frame["transcript_id"]
    if len(column) == 0:
        return []
    if column.isna().any():
        return None
    codes = pd.factorize(column)[0]
    starts = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()]
    if len(starts) != codes.max() + 1:
        return None  # a transcript's rows are in more than one place
    stops = [*starts[1:], len(codes)]
    ids = column.iloc[starts].tolist()
    return [(str(tid), a, b) for tid, a, b in zip(ids, starts, stops, strict=True)]
