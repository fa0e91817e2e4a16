"""Chunks: embedding and assignment in work packages of a few thousand units.

Why: holding every unit's vector at once grows with the corpus (7,000 pages: ~300,000 units,
~450 MB of vectors); one Prefect task per unit would spend more time in bookkeeping than in the
model. A chunk is a run of consecutive embedded units cut only between turns (a unit's context
never leaves its turn, see ``assign.add_context``), so coding chunk by chunk gives exactly the
suggestions of coding everything at once. The same ``code_chunk`` runs in this process or on a
Dask worker; the embedding cache stays with the flow, so workers need no shared disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.assign import add_context, coded_units, scoped_by, top_codes
from pipeline.coder import Coder
from pipeline.embed import Encoder
from pipeline.settings import Settings

CHUNK_COLUMNS = ["unit_id", "transcript_id", "turn_index", "text", "codable"]


def chunk_columns(coder: Coder) -> list[str]:
    """The units' columns a chunk carries: the core ones, plus the attributes that scope
    codes (``applies_to``) when the coder's codebook has any."""
    return CHUNK_COLUMNS + [c for c in scoped_by(coder) if c not in CHUNK_COLUMNS]


@dataclass
class ChunkResult:
    suggestions: pd.DataFrame
    best: pd.DataFrame
    new_texts: list[str]  # encoded here: the flow adds them to the embedding cache
    new_vectors: np.ndarray
    embed_s: float
    assign_s: float
    encoded: int = 0  # len(new_texts), kept after the flow has saved and dropped them

    def drop_new_vectors(self) -> None:
        """Once saved to the cache: keep only the count, so memory does not grow with the
        corpus (a ``[:0]`` slice would keep the whole array alive)."""
        self.new_texts = []
        self.new_vectors = np.zeros((0, self.new_vectors.shape[1]), dtype=np.float32)


def plan_chunks(embedded: pd.DataFrame, size: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about ``size`` units, cut only where a turn ends."""
    n = len(embedded)
    if n == 0:
        return []
    tid = embedded["transcript_id"].to_numpy()
    turn = embedded["turn_index"].to_numpy()
    boundary = np.ones(n + 1, dtype=bool)  # boundary[i]: a turn starts at row i (or i == n)
    boundary[1:n] = (tid[1:] != tid[:-1]) | (turn[1:] != turn[:-1])
    cuts = np.flatnonzero(boundary)
    chunks, start = [], 0
    while start < n:
        # The first turn boundary at or after start + size (a long turn stays whole).
        stop = int(cuts[np.searchsorted(cuts, min(start + size, n))])
        chunks.append((start, stop))
        start = stop
    return chunks


def code_chunk(
    chunk: pd.DataFrame,
    cached: dict[str, np.ndarray],
    coder: Coder,
    settings: Settings,
    encoder: Callable[[], Encoder],
) -> ChunkResult:
    """Embed the chunk's texts missing from ``cached`` and suggest codes for its units.

    ``encoder`` is a factory, called only when something is missing (a warm run never loads
    the model).
    """
    clock = time.perf_counter()
    texts = chunk["text"].tolist()
    missing = sorted({t for t in texts if t not in cached}, key=len)
    new = np.zeros((0, coder.dimension), dtype=np.float32)
    if missing:
        new = encoder().encode(missing, batch_size=settings.batch_size)
    lookup = {**cached, **dict(zip(missing, new, strict=True))}
    vectors = (
        np.vstack([lookup[t] for t in texts]).astype(np.float32, copy=False)
        if texts
        else np.zeros((0, coder.dimension), dtype=np.float32)
    )
    embed_s = time.perf_counter() - clock

    clock = time.perf_counter()
    blended = add_context(
        vectors,
        chunk["transcript_id"].tolist(),
        chunk["turn_index"].tolist(),
        settings.context_weight,
    )
    codable = chunk["codable"].to_numpy(dtype=bool)
    units = coded_units(chunk.loc[codable], blended[codable], scoped_by(coder))
    suggested = coder.suggest(units)
    best = top_codes(suggested.scores, units.ids, coder.code_ids)
    assign_s = time.perf_counter() - clock
    return ChunkResult(suggested.table, best, missing, new, embed_s, assign_s, len(missing))


def combine(results: list[ChunkResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All chunks' suggestions and best codes, in reading order, as one run would give them."""
    suggestions = [r.suggestions for r in results if len(r.suggestions)]
    best = [r.best for r in results if len(r.best)]
    if not suggestions:
        first = results[0].suggestions if results else pd.DataFrame()
        suggestions = [first]
    if not best:
        best = [results[0].best if results else pd.DataFrame(columns=["unit_id"])]
    return (
        pd.concat(suggestions, ignore_index=True),
        pd.concat(best, ignore_index=True),
    )


def dask_task_runner(settings: Settings) -> Any:
    """prefect-dask's runner: the cluster at ``dask_address``, or a LocalCluster here.

    The local cluster uses one single-threaded worker process per core, each with one torch
    thread, so workers do not fight over the cores; each loads the model once.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:  # pragma: no cover - prefect-dask is a dependency
        from pipeline.errors import SettingsError

        raise SettingsError(
            f"task_runner=dask needs prefect-dask ({error}); install qcode's dependencies"
        ) from None
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    import os

    workers = max(1, min(os.cpu_count() or 1, 4))
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "host": "127.0.0.1",
            "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},  # one torch thread each
        },
    )
