"""The retraining flow: learn from reviewers' decisions in the project store.

Run it whenever reviewers have decided a batch of units; the next ``qcode run --classifier``
uses what it learned. One task per stage, like the coding flow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.assign import add_context, embedded_mask
from pipeline.classify import (
    ClassifierError,
    TrainedCoder,
    train_from_labelled,
    training_recipe,
    tune_encoder,
)
from pipeline.decisions import project_decisions
from pipeline.embed import EmbeddingCache, embed_texts
from pipeline.evaluate import reviewer_codes
from pipeline.preload import cache_dir_of, get_encoder
from pipeline.settings import Settings
from pipeline.store import Store, location
from pipeline.store_pg import is_url, shown


def labelled_units(store: Store) -> tuple[pd.DataFrame, list[list[str]]]:
    """Units any reviewer decided, with the codes they hold (the latest decision wins); a
    coding imported for comparison only is not the project's and does not train its coder."""
    resolved = project_decisions(store.resolved_decisions())
    merged: dict[str, set[str]] = {}
    for units in reviewer_codes(resolved).values():
        for unit_id, codes in units.items():
            merged.setdefault(unit_id, set()).update(codes)
    units = store.units()
    labelled = units[units["unit_id"].isin(merged)].reset_index(drop=True)
    return labelled, [sorted(merged[u]) for u in labelled["unit_id"]]


@task(name="collect decisions", cache_policy=NO_CACHE)
def collect_task(store_path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, list[list[str]]]:
    with Store(store_path) as store:
        labelled, codes = labelled_units(store)
        return store.units(), labelled, codes


def _progress_logger(logger):
    """Log learning progress about every 10% (``qcode retrain`` shows these lines)."""
    last = [-1]

    def report(stage: str, done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            logger.info("train: %s %d/%d", stage, done, total)

    return report


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    store_path: Path | str,
    units: pd.DataFrame,
    labelled: pd.DataFrame,
    codes: list[list[str]],
    settings: Settings,
    out: Path,
    target_precision: float | None,
) -> TrainedCoder:
    logger = get_run_logger()
    cache = EmbeddingCache(cache_dir_of(settings) / "embeddings.sqlite")
    recipe = training_recipe(settings)
    try:
        with Store(store_path) as store:
            codebook = store.codebook()
        encoder = tune_encoder(
            get_encoder(settings.model),
            labelled["text"].tolist(),
            codes,
            codebook,
            recipe,
            out,
            _progress_logger(logger),
        )
        # Only the decided units and their neighbours in the turn are encoded (a unit's vector
        # is blended with theirs, as in a run); the next run encodes the rest.
        embedded = units[embedded_mask(units, settings)].reset_index(drop=True)
        row_of = {u: i for i, u in enumerate(embedded["unit_id"])}
        rows = np.asarray([row_of[u] for u in labelled["unit_id"]], dtype=int)
        needed = np.unique(np.clip(np.concatenate([rows - 1, rows, rows + 1]), 0, None))
        needed = needed[needed < len(embedded)]
        near = embedded.iloc[needed]
        vectors, _ = embed_texts(near["text"].tolist(), encoder, cache, settings.batch_size)
        blended = add_context(
            vectors,
            near["transcript_id"].tolist(),
            near["turn_index"].tolist(),
            settings.context_weight,
        )
        rows = np.searchsorted(needed, rows)
        coder = train_from_labelled(
            blended[rows],
            codes,
            codebook,
            encoder,
            settings,
            cache,
            target_precision,
            texts=labelled["text"].tolist(),
            progress=_progress_logger(logger),
            recipe=recipe,
        )
    finally:
        cache.close()
    where = shown(str(store_path)) if is_url(store_path) else str(store_path)  # no password
    coder.info["trained_from"] = {"store": where, "units": len(labelled)}
    coder.save(out)
    logger.info(
        "train: %d reviewed units; own models for %d codes: %s",
        len(labelled),
        len(coder.info["learned_codes"]),
        ", ".join(coder.info["learned_codes"]) or "-",
    )
    return coder


@flow(name="retrain-from-decisions")
def retrain_from_decisions(
    store_path: Path | str,
    out: Path | None = None,
    settings: Settings | None = None,
    target_precision: float | None = None,
) -> Path:
    """Train a coder on reviewers' decisions; saved beside the store by default (a PostgreSQL
    store: in ./coder)."""
    settings = settings or Settings()
    store_path = location(store_path)
    if out is None:
        out = Path("coder") if is_url(store_path) else Path(store_path).parent / "coder"
    units, labelled, codes = collect_task(store_path)
    if labelled.empty:
        raise ClassifierError(
            "no unit has been reviewed yet, so there is nothing to learn from", store_path
        )
    train_task(store_path, units, labelled, codes, settings, out, target_precision)
    return out
