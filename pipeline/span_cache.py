"""Offsets found in a text, kept on disk by the text and what found them.

Two stages cache this way: segmentation (sentence offsets per paragraph, ``segment``) and the
anonymity check (NER's people and places per stretch of text, ``privacy``). Only offsets and
kinds are stored, under a hash of the text: never the text itself, so the cache holds no names.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path


def spacy_model_id(package: str) -> str:
    """A spaCy model package and spaCy itself, with their versions ("?" if the model is not an
    installed package): what a cache of that model's spans is keyed by."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        model = version(package.replace("_", "-"))
    except PackageNotFoundError:
        model = "?"
    return f"{package}=={model};spacy=={version('spacy')}"


class SpanCache:
    """Spans (tuples of offsets, and kinds) per text in a SQLite file; ``namespace`` names the
    model and version that found them, so another model never reads them."""

    def __init__(self, path: Path, namespace: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS spans (key BLOB PRIMARY KEY, spans TEXT)")
        self.db.commit()

    def key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.namespace}\x00{text}".encode()).digest()

    def get_many(self, keys: list[bytes]) -> dict[bytes, list[tuple]]:
        found: dict[bytes, list[tuple]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, spans in self.db.execute(
                f"SELECT key, spans FROM spans WHERE key IN ({marks})", chunk
            ):
                found[key] = [tuple(x) for x in json.loads(spans)]
        return found

    def put_many(self, items: list[tuple[bytes, list[tuple]]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO spans (key, spans) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items],
            )

    def close(self) -> None:
        self.db.close()
