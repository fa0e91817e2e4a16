from __future__ import annotations

import numpy as np
import pytest

from pipeline.embed import EmbeddingCache, embed_texts, load_encoder, model_fingerprint
from pipeline.errors import ModelError


class CountingEncoder:
    """Wraps the real encoder to count what reaches it (the cache must keep texts away)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.fingerprint = inner.fingerprint
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64):
        self.seen.extend(texts)
        return self.inner.encode(texts, batch_size)


def test_real_model_gives_unit_vectors(encoder):
    vectors = encoder.encode(["We trust each other now.", "The funding ran out."])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_are_closer(encoder):
    a, b, c = encoder.encode(
        [
            "We trust each other and can talk openly.",
            "There is real trust in the group now.",
            "The budget for supply cover was cut.",
        ]
    )
    assert a @ b > a @ c


def test_cache_avoids_re_embedding(tmp_path, encoder):
    counting = CountingEncoder(encoder)
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    texts = ["one sentence here", "another sentence", "one sentence here"]
    first, encoded = embed_texts(texts, counting, cache)
    assert encoded == 2 and counting.seen == ["one sentence here", "another sentence"]
    cache.close()
    reopened = EmbeddingCache(tmp_path / "e.sqlite")
    second, encoded_again = embed_texts([*texts, "a new one"], counting, reopened)
    assert encoded_again == 1 and counting.seen[-1] == "a new one"
    assert np.allclose(first, second[:3])
    assert len(reopened) == 3


def test_cache_is_keyed_by_model(tmp_path, encoder):
    counting = CountingEncoder(encoder)
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embed_texts(["same text"], counting, cache)
    counting.fingerprint = "another-model"
    _, encoded = embed_texts(["same text"], counting, cache)
    assert encoded == 1


def test_fingerprint_is_stable_and_content_based(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = model_fingerprint(tmp_path)
    assert first == model_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert model_fingerprint(tmp_path) != first


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot be loaded offline"):
        load_encoder(str(tmp_path / "no-such-model"))
