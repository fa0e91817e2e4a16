"""Preload: heavy components built once per process, and loaded ahead of need.

Why: spaCy and the sentence encoder take seconds to load. A run loads each at most once per
process (a Dask worker too), through the cached factories here, and only when something is
not in the caches: a re-run with nothing new loads neither. When a run will likely need them,
``preload`` starts loading in background threads, so loading overlaps other work (Prefect's
temporary server starting, spaCy on new paragraphs). The flows wire these in; errors of a
preload surface where the flow itself needs the component.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.embed import SentenceTransformerEncoder, default_precision, load_encoder
from pipeline.ingest import find_transcripts
from pipeline.privacy import shared_analyzer
from pipeline.segment import load_sentencizer
from pipeline.settings import Settings

SPACY_PRELOAD = "spaCy"  # the thread loading the sentencizer and the privacy analyzer

_factory_lock = threading.Lock()  # a preloading thread and the flow may ask at once
_spacy_lock = threading.Lock()
_preloads: dict[str, threading.Thread] = {}
_presidio_imported = threading.Event()


def get_encoder(model: str, precision: str | None = None) -> SentenceTransformerEncoder:
    """The encoder for this process (a Dask worker too): built once, model loaded on first use."""
    with _factory_lock:
        return _encoder(model, precision or default_precision())


@lru_cache(maxsize=4)
def _encoder(model: str, precision: str) -> SentenceTransformerEncoder:
    return load_encoder(model, precision=precision, lazy=True)


def get_sentencizer() -> Any:
    """spaCy's sentence recogniser for this process, loaded once."""
    with _spacy_lock:
        return _sentencizer()


@lru_cache(maxsize=1)
def _sentencizer() -> Any:
    return load_sentencizer()


def default_cache_dir() -> Path:
    return Path.cwd() / ".cache"


def cache_dir_of(settings: Settings) -> Path:
    """The cache folder a run with these settings uses (``cache_dir``, else ``./.cache``)."""
    return Path(settings.cache_dir or default_cache_dir())


def preload(settings: Settings, sentencizer: bool = False) -> None:
    """Load the model (and spaCy, if asked) in background threads, so that loading overlaps
    other work: the temporary Prefect server's start, or spaCy on new paragraphs. Errors
    surface where the flow itself needs them."""
    jobs: dict[str, Callable[[], object]] = {}
    privacy_first = sentencizer and settings.privacy != "off"
    if settings.task_runner == "local":  # Dask workers load their own model
        encoder = get_encoder(settings.model, settings.precision)

        def load_model() -> object:
            if privacy_first:
                # Presidio imports torch and transformers too: one thread imports them, and
                # the privacy check (which comes first) gets its analyzer sooner.
                _presidio_imported.wait(timeout=300)
            return encoder.model

        jobs[f"encoder {settings.model} {settings.precision}"] = load_model
    if sentencizer:
        jobs[SPACY_PRELOAD] = lambda: _load_spacy_models(settings)
    for name, job in jobs.items():
        if name not in _preloads:
            thread = threading.Thread(
                target=_quietly, args=(job,), name=f"qcode-preload {name}", daemon=True
            )
            thread.start()
            _preloads[name] = thread


def _load_spacy_models(settings: Settings) -> None:
    """The sentencizer, then the privacy check's analyzer (its own spaCy pipeline). The
    encoder's thread waits until Presidio's imports are done: two threads importing one
    package at once can break the import."""
    try:
        get_sentencizer()
        if settings.privacy != "off":
            # Presidio and its recognisers, which import torch and transformers.
            import presidio_analyzer.predefined_recognizers  # noqa: F401
    finally:
        _presidio_imported.set()
    if settings.privacy != "off":
        shared_analyzer()


def _quietly(job: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        job()


def finish_preloads(name: str | None = None) -> None:
    """Wait for the preload thread ``name`` (default: all of them)."""
    if name is not None:
        thread = _preloads.pop(name, None)
        if thread is not None:
            thread.join()
        return
    while _preloads:
        _preloads.popitem()[1].join()


def models_likely_needed(transcripts_dir: Path, out_dir: Path, settings: Settings) -> bool:
    """A cheap guess made before the flow starts: do the transcripts (bytes) or settings differ
    from the last run's in ``out_dir``? Only decides whether to preload; never what is run."""
    latest = out_dir / "LATEST"
    if not latest.is_file():
        return True
    manifest_path = out_dir / latest.read_text(encoding="utf-8").strip() / "manifest.json"
    if not manifest_path.is_file():
        return True
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("settings") != json.loads(settings.model_dump_json()):
        return True
    before = {(Path(i["path"]).name, i["sha256"]) for i in manifest.get("inputs", [])}
    now = {
        (p.name, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in find_transcripts(transcripts_dir)
    }
    return now != before
