"""The coding flow: transcripts in, coded units and draft summaries out.

One Prefect task per stage (never one per unit). Heavy components (spaCy, the encoder) are
loaded once per process by cached factories and passed into the stages.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.assign import assign_units, build_prototypes, embedded_mask
from pipeline.classify import TrainedCoder
from pipeline.codebook import Codebook, load_codebook
from pipeline.decisions import current_codings, resolve_anchors, review_counts
from pipeline.embed import EmbeddingCache, SentenceTransformerEncoder, embed_texts, load_encoder
from pipeline.errors import Problem
from pipeline.ingest import Transcript, read_transcripts
from pipeline.outputs import build_manifest, new_run_id, write_run
from pipeline.report import build_summaries, render_summaries
from pipeline.segment import load_sentencizer, segment, units_frame
from pipeline.settings import Settings
from pipeline.store import Store


@lru_cache(maxsize=2)
def get_encoder(model: str) -> SentenceTransformerEncoder:
    return load_encoder(model)


@lru_cache(maxsize=1)
def get_sentencizer() -> Any:
    return load_sentencizer()


def default_cache_dir() -> Path:
    return Path.cwd() / ".cache"


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(folder: Path, on_error: str) -> tuple[list[Transcript], list[Problem]]:
    logger = get_run_logger()
    transcripts, problems = read_transcripts(folder, on_error)
    logger.info(
        "ingest: %d transcripts read, %d skipped",
        len(transcripts),
        sum(p.severity == "skipped" for p in problems),
    )
    for problem in problems:
        logger.warning("ingest: %s", problem)
    return transcripts, problems


@task(name="segment", cache_policy=NO_CACHE)
def segment_task(transcripts: list[Transcript], settings: Settings) -> pd.DataFrame:
    units = units_frame(segment(transcripts, get_sentencizer(), settings), transcripts)
    get_run_logger().info("segment: %d units (%d to code)", len(units), int(units["codable"].sum()))
    return units


@task(name="embed", cache_policy=NO_CACHE)
def embed_task(texts: list[str], settings: Settings, cache_dir: Path) -> tuple[Any, int]:
    logger = get_run_logger()
    encoder = get_encoder(settings.model)
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    try:
        vectors, encoded = embed_texts(
            texts,
            encoder,
            cache,
            settings.batch_size,
            progress=lambda done, total: logger.info("embed: %d of %d new texts", done, total),
        )
    finally:
        cache.close()
    logger.info(
        "embed: %d units, %d newly embedded, %d from cache",
        len(texts),
        encoded,
        len(texts) - encoded,
    )
    return vectors, encoded


@task(name="assign", cache_policy=NO_CACHE)
def assign_task(
    units: pd.DataFrame, vectors: Any, codebook: Codebook, settings: Settings, cache_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    encoder = get_encoder(settings.model)
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    try:
        prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
    finally:
        cache.close()
    coder = None
    if settings.classifier is not None:
        coder = TrainedCoder.load(settings.classifier)
        coder.check_fits(codebook.ids, encoder.fingerprint, settings.classifier)
    suggestions, best = assign_units(units, vectors, prototypes, settings, coder)
    get_run_logger().info(
        "assign: %d suggestions on %d of %d units",
        len(suggestions),
        suggestions["unit_id"].nunique(),
        int(units["codable"].sum()),
    )
    return suggestions, best


@task(name="write outputs", cache_policy=NO_CACHE)
def write_task(
    out_root: Path,
    run_id: str,
    transcripts: list[Transcript],
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    manifest: dict,
    codebook: Codebook,
    settings: Settings,
    store_path: Path,
) -> Path:
    """Reconcile reviewers' decisions with this run, write the run folder, record the run."""
    logger = get_run_logger()
    store = Store(store_path)
    try:
        resolved = resolve_anchors(
            store.decisions(), units, {t.transcript_id: t.text for t in transcripts}, codebook
        )
        codings = current_codings(suggestions, resolved)
        orphaned = resolved[resolved["anchor"] == "orphaned"]
        manifest["review"] = review_counts(units, codings, resolved)

        def render(folder: Path) -> None:
            summaries = build_summaries(
                codebook, units, codings, settings.quotes_per_code, settings.quote_max_chars
            )
            render_summaries(summaries, codebook, manifest, folder, settings.template_dir)

        run_dir = write_run(
            out_root,
            run_id,
            transcripts,
            units,
            suggestions,
            manifest,
            render,
            tables={"codings": codings, "orphaned_decisions": orphaned},
            before_commit=lambda: store.record_run(
                manifest, transcripts, units, suggestions, codebook
            ),
        )
    finally:
        store.close()
    if len(orphaned):
        logger.warning(
            "review: %d decisions are orphaned (their text or code is gone); see %s",
            len(orphaned),
            run_dir / "orphaned_decisions.csv",
        )
    logger.info("write: %s", run_dir)
    return run_dir


@flow(name="code-transcripts", log_prints=True)
def code_transcripts(
    transcripts_dir: Path,
    codebook_path: Path,
    out_dir: Path = Path("outputs"),
    settings: Settings | None = None,
) -> Path:
    """Code every transcript in a folder against a codebook; returns the run folder."""
    settings = settings or Settings()
    started = datetime.now(UTC)
    timings: dict[str, float] = {}
    cache_dir = settings.cache_dir or default_cache_dir()

    clock = time.perf_counter()
    codebook = load_codebook(codebook_path)
    transcripts, problems = ingest_task(Path(transcripts_dir), settings.on_error)
    timings["ingest"] = time.perf_counter() - clock

    clock = time.perf_counter()
    units = segment_task(transcripts, settings)
    timings["segment"] = time.perf_counter() - clock

    clock = time.perf_counter()
    texts = units.loc[embedded_mask(units, settings), "text"].tolist()
    vectors, encoded = embed_task(texts, settings, cache_dir)
    timings["embed"] = time.perf_counter() - clock

    clock = time.perf_counter()
    suggestions, best = assign_task(units, vectors, codebook, settings, cache_dir)
    timings["assign"] = time.perf_counter() - clock

    encoder = get_encoder(settings.model)
    units = units.merge(best, on="unit_id", how="left")
    located = suggestions.merge(units[["unit_id", "transcript_id", "start", "end"]], on="unit_id")
    run_id = new_run_id(transcripts, codebook, settings, encoder.fingerprint)
    manifest = build_manifest(
        run_id,
        started,
        transcripts,
        problems,
        codebook,
        settings,
        {"name": encoder.name, "fingerprint": encoder.fingerprint, "setting": settings.model},
        units,
        located,
        timings,
        encoded,
    )
    if settings.classifier is not None:
        manifest["classifier"] = {
            "path": str(settings.classifier),
            **TrainedCoder.load(settings.classifier).info,
        }
    store_path = settings.store or Path(out_dir) / "project.sqlite"
    run_dir = write_task(
        Path(out_dir), run_id, transcripts, units, located, manifest, codebook, settings, store_path
    )
    return run_dir
