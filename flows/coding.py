"""The coding flow: transcripts in, coded units and draft summaries out.

One Prefect task per stage (ingest, segment, prototypes, write outputs) and one per chunk of a
few thousand units for embedding and assignment (``pipeline.chunks``), never one per unit.
Heavy components (spaCy, the encoder) are loaded once per process by the cached factories of
``pipeline.preload``, and only when something is not in the caches: a re-run with nothing new
loads neither. The coder (zero-shot or learned, ``pipeline.coder``) is made once and handed to
every chunk. With ``task_runner=dask`` the chunks run on a Dask cluster through prefect-dask.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.runtime import HeadStartFlow, api_url_for_workers
from pipeline.assign import Prototypes, ZeroShotCoder, build_prototypes, embedded_mask
from pipeline.chunks import ChunkResult, chunk_columns, code_chunk, combine, plan_chunks
from pipeline.codebook import Codebook, load_codebook
from pipeline.coder import SUGGESTION_COLUMNS, Coder
from pipeline.decisions import (
    current_codings,
    decided_rows,
    in_reading_order,
    project_decisions,
    resolve_anchors,
    review_counts,
    unit_review_state,
)
from pipeline.embed import EmbeddingCache, RemoteEncoder, cache_namespace
from pipeline.errors import NothingToCodeError, Problem
from pipeline.incremental import (
    CsvParts,
    TranscriptResults,
    assemble,
    results_keys,
    run_key,
    save_new,
    transcript_key,
)
from pipeline.incremental import split as split_unchanged
from pipeline.ingest import Transcript, read_transcripts
from pipeline.outputs import (
    build_manifest,
    clean_partial_runs,
    inputs_key,
    new_run_id,
    read_store_state,
    reusable_run,
    write_run,
)
from pipeline.preload import (
    SPACY_PRELOAD,
    cache_dir_of,
    default_cache_dir,
    finish_preloads,
    get_encoder,
    get_sentencizer,
    preload,
)
from pipeline.privacy import (
    Finding,
    PrivacyStopped,
    check_before_coding,
    findings_table,
    names_file,
    write_redacted_copies,
)
from pipeline.report import build_summaries, render_summaries
from pipeline.segment import SentenceCache, segment_frame
from pipeline.settings import Settings
from pipeline.store import Store, run_store
from pipeline.tune import run_settings

__all__ = ["code_transcripts", "default_cache_dir", "get_encoder"]

LOGGED_FINDINGS = 25  # the anonymity check's findings a run logs one by one


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
def segment_task(
    transcripts: list[Transcript], settings: Settings, cache_dir: Path
) -> pd.DataFrame:
    def sentencizer() -> Any:  # called only when some paragraph is new
        preload(settings)  # new text: the model will be needed too
        return get_sentencizer()

    cache = SentenceCache(cache_dir / "sentences.sqlite")
    try:
        units = segment_frame(transcripts, sentencizer, settings, cache)
    finally:
        cache.close()
    get_run_logger().info("segment: %d units (%d to code)", len(units), int(units["codable"].sum()))
    return units


@task(name="encode", cache_policy=NO_CACHE)
def encode_task(texts: list[str], settings: Settings) -> np.ndarray:
    """Encode texts where this task runs (a Dask worker: its own copy of the model)."""
    return get_encoder(settings.model, settings.precision).encode(texts, settings.batch_size)


def make_coder(prototypes: Prototypes, settings: Settings, trained: Any = None) -> Coder:
    """Zero-shot, or the learned coder: its modules (scikit-learn, about a third of a run's
    start-up) are imported only when a trained coder is used."""
    if trained is None:
        return ZeroShotCoder(prototypes, settings)
    from pipeline.classify import make_coder as learned_coder

    return learned_coder(prototypes, settings, trained)


def _prototypes(codebook: Codebook, settings: Settings, cache_dir: Path, runner: Any) -> Prototypes:
    encoder: Any = get_encoder(settings.model, settings.precision)
    if runner is not None:  # new prototype texts are encoded by a task on the cluster

        def submit(texts: list[str]) -> np.ndarray:
            parameters = {"texts": texts, "settings": settings}
            return runner.submit(encode_task, parameters=parameters).result()

        encoder = RemoteEncoder(encoder, submit)
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    try:
        return build_prototypes(codebook, encoder, cache, settings.batch_size)
    finally:
        cache.close()


@task(name="prototypes", cache_policy=NO_CACHE)
def prototypes_task(codebook: Codebook, settings: Settings, cache_dir: Path) -> Prototypes:
    """Each code's definition and examples, embedded (from the cache when seen before)."""
    return _prototypes(codebook, settings, cache_dir, None)


@task(name="embed and assign", cache_policy=NO_CACHE)
def code_chunk_task(
    chunk: pd.DataFrame,
    cached: dict[str, np.ndarray],
    coder: Coder,
    settings: Settings,
) -> ChunkResult:
    """One chunk: embed its texts missing from the cache, then suggest codes for its units."""
    return code_chunk(
        chunk, cached, coder, settings, lambda: get_encoder(settings.model, settings.precision)
    )


def _code_chunks(
    embedded: pd.DataFrame,
    coder: Coder,
    settings: Settings,
    cache_dir: Path,
    runner: Any = None,
) -> tuple[list[ChunkResult], float]:
    """Code every chunk in order; returns the results and the seconds spent on the cache.

    The flow looks up cached vectors and saves new ones, so workers never touch the disk.
    With a ``runner`` (prefect-dask's) a few chunks per worker are in flight at once; memory
    stays bounded by the chunks in flight, never the whole corpus.
    """
    logger = get_run_logger()
    namespace = cache_namespace(get_encoder(settings.model, settings.precision))
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    chunks = plan_chunks(embedded, settings.chunk_size)
    results: list[ChunkResult] = []
    pending: deque = deque()
    cache_s = 0.0
    window = 8 if runner is not None else 1

    def collect(result: ChunkResult) -> None:
        nonlocal cache_s
        clock = time.perf_counter()
        if result.new_texts:
            cache.save(namespace, result.new_texts, result.new_vectors)
        result.drop_new_vectors()
        results.append(result)
        cache_s += time.perf_counter() - clock
        encoded = sum(r.encoded for r in results)
        logger.info(
            "embed and assign: %d of %d chunks (%d texts encoded)",
            len(results),
            len(chunks),
            encoded,
        )

    try:
        for start, stop in chunks:
            part = embedded.iloc[start:stop]
            clock = time.perf_counter()
            cached = cache.lookup(namespace, part["text"].tolist())
            cache_s += time.perf_counter() - clock
            args = {
                "chunk": part,
                "cached": cached,
                "coder": coder,
                "settings": settings,
            }
            if runner is not None:
                pending.append(runner.submit(code_chunk_task, parameters=args))
                while len(pending) >= window:
                    collect(pending.popleft().result())
            else:
                collect(code_chunk_task(**args))
        while pending:
            collect(pending.popleft().result())
    finally:
        cache.close()
    return results, cache_s


@task(name="reuse check", cache_policy=NO_CACHE)
def reuse_task(
    transcripts: list[Transcript],
    problems: list[Problem],
    codebook: Codebook,
    settings: Settings,
    model_fingerprint: str,
    out_root: Path,
    store_path: Path | str,
    transcripts_dir: Path | None = None,
) -> tuple[str, Path | None]:
    """The inputs key of this run, and the newest run folder if it was made from exactly the
    same inputs (nothing changed: its outputs stand, and nothing is rewritten)."""
    state, latest = read_store_state(store_path)
    names = names_file(settings.privacy_names, transcripts_dir)
    if settings.privacy != "off" and names is not None and names.is_file():
        # The privacy check's names file decides what is redacted, hence what is coded.
        state += "\x00" + hashlib.sha256(names.read_bytes()).hexdigest()
    key = inputs_key(transcripts, problems, codebook, settings, model_fingerprint, state)
    reused = reusable_run(out_root, key, latest)
    if reused is not None:
        get_run_logger().info(
            "nothing changed since run %s (transcripts, codebook, settings, model, reviewers' "
            "decisions): its outputs stand; nothing was recomputed or rewritten",
            reused.name,
        )
    return key, reused


@task(name="privacy check", cache_policy=NO_CACHE)
def privacy_task(
    transcripts: list[Transcript],
    settings: Settings,
    store_path: Path | str,
    out_dir: Path,
    transcripts_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Transcript], list[Finding], dict]:
    """Find personal data; code the redacted text (or code nothing, under 'stop': the flow
    then returns a ``PrivacyStopped`` rather than raise, so that no traceback, and no flagged
    text, goes to the terminal or Prefect's database)."""
    logger = get_run_logger()
    if settings.privacy != "off":
        # The analyzer imports spaCy and Presidio; the spaCy preload thread may be doing so,
        # and two threads importing one package at once can break the import. The encoder's
        # thread goes on loading the model while this scans.
        finish_preloads(SPACY_PRELOAD)
    to_code, findings, summary = check_before_coding(
        transcripts,
        settings.privacy,
        settings.privacy_names,
        store_path,
        transcripts_dir,
        cache_dir,
    )
    for finding in findings[:LOGGED_FINDINGS]:
        # Where and what kind, with a masked snippet, never the text: Prefect keeps its logs.
        logger.warning("privacy: %s", finding.masked())
    if len(findings) > LOGGED_FINDINGS:
        # Every line is a write to Prefect's database, every run (a second at 7,000 pages);
        # the run folder's privacy_findings.csv and 'qcode check-privacy' list them all.
        logger.warning(
            "privacy: ... and %d more, listed in the run folder's privacy_findings.csv",
            len(findings) - LOGGED_FINDINGS,
        )
    if summary.get("stopped"):
        logger.error("privacy: nothing was coded (policy 'stop'); see 'qcode check-privacy'.")
    elif findings:
        logger.warning(
            "privacy: %d likely pieces of personal data; coding the redacted text. See them "
            "with 'qcode check-privacy', mark false alarms with 'qcode false-alarm'.",
            len(findings),
        )
        if settings.privacy == "redact":
            logger.info("privacy: redacted copies in %s", write_redacted_copies(to_code, out_dir))
    return to_code, findings, summary


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
    store_path: Path | str,
    extra_tables: dict[str, pd.DataFrame] | None = None,
    csv_parts: CsvParts | None = None,
    versions: dict[str, str] | None = None,
) -> Path:
    """Reconcile reviewers' decisions with this run, write the run folder, record the run
    (``versions``: each transcript's results key, so the store keeps suggestions per version)."""
    logger = get_run_logger()
    store = Store(store_path)
    try:
        decisions = store.decisions()
        # Where decisions on units this run lacks were (this run is not stored yet: every
        # stored unit is earlier), read for those decisions' transcripts only. (A set, not
        # ``isin``: ``isin`` against Arrow text took 2 s at 7,000 pages.)
        current = set(units["unit_id"].tolist())
        resolved = resolve_anchors(
            decisions,
            units,
            {t.transcript_id: t.text for t in transcripts},
            codebook,
            store.earlier_units_of(decisions, current),
            current_ids=current,
        )
        # The run folder's table: by transcript, in reading order (each transcript's rows
        # one block of the CSV).
        unit_index = pd.Index(units["unit_id"])
        codings = in_reading_order(
            current_codings(suggestions, resolved, by_unit_id=False), units, unit_index
        )
        orphaned = resolved[resolved["anchor"] == "orphaned"]
        state = unit_review_state(units, suggestions, project_decisions(resolved))
        manifest["review"] = review_counts(units, codings, resolved, state)

        def render(folder: Path) -> None:
            summaries = build_summaries(
                codebook,
                units,
                codings,
                settings.quotes_per_code,
                settings.quote_max_chars,
                set(state.loc[state["reviewed"], "unit_id"]),
                unit_index,
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
            tables={"codings": codings, "orphaned_decisions": orphaned, **(extra_tables or {})},
            before_commit=lambda: store.record_run(
                manifest, transcripts, units, suggestions, codebook, versions
            ),
            write_csv=None if csv_parts is None else csv_parts.write,
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


def code_transcripts(
    transcripts_dir: Path,
    codebook_path: Path,
    out_dir: Path = Path("outputs"),
    settings: Settings | None = None,
) -> Path | PrivacyStopped:
    """Code every transcript in a folder against a codebook; returns the run folder (or, if
    the privacy policy 'stop' found personal data, why nothing was coded)."""
    settings = run_settings(settings or Settings())  # a tuned coder brings its encoder
    started = datetime.now(UTC)
    timings: dict[str, float] = {}
    cache_dir = cache_dir_of(settings)

    clean_partial_runs(Path(out_dir))  # hidden folders of killed runs
    clock = time.perf_counter()
    codebook = load_codebook(codebook_path)
    transcripts, problems = ingest_task(Path(transcripts_dir), settings.on_error)
    timings["ingest"] = time.perf_counter() - clock
    if not transcripts:
        raise NothingToCodeError(
            "no transcript could be read, so nothing was coded:\n"
            + "\n".join(f"  - {p}" for p in problems if p.severity == "skipped")
            + "\nFix the files as each line says and run again.",
            transcripts_dir,
        )

    encoder = get_encoder(settings.model, settings.precision)  # the model loads only if needed
    store_path = run_store(settings.store, Path(out_dir))
    key, reused = reuse_task(
        quote(transcripts),
        quote(problems),
        codebook,
        settings,
        encoder.fingerprint,
        Path(out_dir),
        store_path,
        Path(transcripts_dir),
    )
    if reused is not None:
        finish_preloads()  # only if a head start guessed wrong
        # A watching process reads these results while it waits for the first edit.
        TranscriptResults(cache_dir / "results").expect(results_keys(reused))
        return reused

    clock = time.perf_counter()
    transcripts, findings, privacy = privacy_task(
        quote(transcripts), settings, store_path, Path(out_dir), Path(transcripts_dir), cache_dir
    )
    timings["privacy"] = time.perf_counter() - clock
    if privacy.get("stopped"):
        finish_preloads()
        return PrivacyStopped(privacy["stopped"])  # type: ignore[return-value]

    trained = None
    if settings.classifier is not None:
        from pipeline.classify import load_trained

        trained = load_trained(settings.classifier, codebook.ids, encoder.fingerprint)
    # Unchanged transcripts keep their units and suggestions (pipeline.incremental).
    kept_results = TranscriptResults(cache_dir / "results")
    base_key = run_key(settings, codebook, encoder.fingerprint)
    keys = {t.transcript_id: transcript_key(t, base_key) for t in transcripts}
    kept, todo = split_unchanged(transcripts, keys, kept_results)
    clock = time.perf_counter()
    units = segment_task(quote(todo), settings, cache_dir)
    timings["segment"] = time.perf_counter() - clock
    if not units["codable"].any() and not any(k[0]["codable"].any() for k in kept.values()):
        raise NothingToCodeError(
            f"the {len(transcripts)} transcript(s) read hold no unit to code: no participant "
            f"sentence has {settings.min_unit_words} or more words (min_unit_words). Check that "
            "the participants' turns are labelled, or lower min_unit_words",
            transcripts_dir,
        )
    embedded = units.iloc[:0]
    clock = time.perf_counter()
    results: list[ChunkResult] = []
    prototype_s = cache_s = 0.0
    if not todo:
        pass  # every transcript unchanged: nothing to embed or assign
    elif settings.task_runner == "dask":
        from pipeline.chunks import dask_task_runner

        # Chunks (and any new prototype texts) become tasks on the cluster; this flow keeps
        # the caches, the order of results and everything else.
        with api_url_for_workers(), dask_task_runner(settings) as runner:
            coder = make_coder(
                _prototypes(codebook, settings, cache_dir, runner), settings, trained
            )
            prototype_s = time.perf_counter() - clock
            embedded = units.loc[embedded_mask(units, settings), chunk_columns(coder)]
            results, cache_s = _code_chunks(
                embedded.reset_index(drop=True), coder, settings, cache_dir, runner
            )
    else:
        coder = make_coder(prototypes_task(codebook, settings, cache_dir), settings, trained)
        prototype_s = time.perf_counter() - clock
        embedded = units.loc[embedded_mask(units, settings), chunk_columns(coder)]
        results, cache_s = _code_chunks(embedded.reset_index(drop=True), coder, settings, cache_dir)
    stage_s = time.perf_counter() - clock
    finish_preloads()
    encoded = sum(r.encoded for r in results)
    timings["embed"] = prototype_s + cache_s + sum(r.embed_s for r in results)
    timings["assign"] = sum(r.assign_s for r in results)
    if results:
        suggestions, best = combine(results)
        units = units.merge(best, on="unit_id", how="left")
        located = suggestions.merge(
            units[["unit_id", "transcript_id", "start", "end"]], on="unit_id"
        )
    else:  # nothing new to embed (every transcript unchanged, or no participant speaks)
        units = units.assign(top_code=None, top_score=np.nan)
        located = pd.DataFrame(columns=[*SUGGESTION_COLUMNS, "transcript_id", "start", "end"])
    if todo:
        save_new(todo, keys, units, located, kept_results)
    units, located = assemble(transcripts, kept, units, located)
    get_run_logger().info(
        "embed: %d of %d transcripts changed; %d units, %d newly embedded; assign: %d "
        "suggestions on %d of %d units (%d chunks)",
        len(todo),
        len(transcripts),
        len(embedded),
        encoded,
        len(located),
        located["unit_id"].nunique() if len(located) else 0,
        int(units["codable"].sum()),
        len(results),
    )

    run_id = new_run_id(transcripts, codebook, settings, encoder.fingerprint)
    manifest = build_manifest(
        run_id,
        started,
        transcripts,
        problems,
        codebook,
        settings,
        {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "setting": settings.model,
            "precision": settings.precision,
        },
        units,
        located,
        timings,
        encoded,
    )
    manifest["inputs_key"] = key
    manifest["results_keys"] = [keys[t.transcript_id] for t in transcripts]
    manifest["execution"] = {
        "task_runner": settings.task_runner,
        "dask_address": settings.dask_address,
        "chunks": len(results),
        "embed_and_assign_wall_s": round(stage_s, 3),
    }
    if trained is not None:
        manifest["classifier"] = {"path": str(settings.classifier), **trained.info}
    manifest["privacy"] = privacy
    run_dir = write_task(
        Path(out_dir),
        run_id,
        quote(transcripts),
        quote(units),
        quote(located),
        quote(manifest),  # Prefect walks a task's arguments twice: 0.25 s at 7,000 pages
        codebook,
        settings,
        store_path,
        quote({"privacy_findings": findings_table(findings)}),
        quote(CsvParts(kept_results, keys, {"codings": decided_rows})),
        quote(keys),
    )
    return run_dir


code_transcripts = HeadStartFlow(code_transcripts, name="code-transcripts", log_prints=True)
