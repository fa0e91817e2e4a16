"""The encoder's precision and fixed-shape batches: fast, close to fp32, and deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.embed import EmbeddingCache, cache_namespace, embed_texts, load_encoder
from pipeline.errors import ModelError
from pipeline.segment import segment
from pipeline.settings import Settings, preferred_precision


@pytest.fixture(scope="module")
def sentences(nlp, sample_transcripts):
    transcripts, _ = sample_transcripts
    texts = [u.text for u in segment(transcripts[:2], nlp, Settings())]
    return list(dict.fromkeys(texts))[:300]


@pytest.fixture(scope="module")
def fp32_encoder():
    return load_encoder(precision="fp32")


@pytest.fixture(scope="module")
def int8_encoder():
    return load_encoder(precision="int8")


@pytest.fixture(scope="module")
def bf16_encoder(encoder):
    return encoder if encoder.precision == "bf16" else load_encoder(precision="bf16")


def test_default_precision_is_the_settings_default(encoder, tmp_path):
    assert encoder.precision == Settings().precision == preferred_precision()
    with_amx = tmp_path / "amx"
    with_amx.write_text("flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    without = tmp_path / "zen3"
    without.write_text("flags\t\t: fpu avx2 fma sha_ni vaes\n")
    assert preferred_precision(with_amx) == "bf16"
    assert preferred_precision(without) == "fp32"
    assert preferred_precision(tmp_path / "missing") == "fp32"


def test_batches_run_side_by_side_and_torch_keeps_its_threads(bf16_encoder, sentences, monkeypatch):
    # Batches run one per thread (pipeline.embed._in_streams); the process's torch setting is
    # put back afterwards, and a lone batch gives the same bits as among others (below).
    import threading

    import torch

    from pipeline import embed

    before = torch.get_num_threads()
    seen: set[str] = set()
    run_in_streams = embed._in_streams

    def watching(run, plan, torch_module):
        def recorded(*batch):
            seen.add(threading.current_thread().name)
            run(*batch)

        run_in_streams(recorded, plan, torch_module)

    monkeypatch.setattr(embed, "_in_streams", watching)
    side_by_side = bf16_encoder.encode(sentences)
    assert torch.get_num_threads() == before
    if before > 1:
        assert len(seen) > 1 and all(n.startswith("qcode-encode") for n in seen)

    # The same bits as one batch after another on all of torch's threads (how vectors were
    # made before session 15): vectors cached then stay valid, so the cache scheme is the same.
    def one_after_another(run, plan, torch_module):
        for batch in plan:
            run(*batch)

    monkeypatch.setattr(embed, "_in_streams", one_after_another)
    assert np.array_equal(bf16_encoder.encode(sentences), side_by_side)


@pytest.mark.parametrize("precision", ["bf16", "fp32", "int8"])
def test_a_vector_does_not_depend_on_its_batch_companions(precision, sentences, request):
    model = request.getfixturevalue(f"{precision}_encoder")
    whole = model.encode(sentences)
    reordered = list(reversed(sentences[:90]))
    again = model.encode(reordered)[::-1]
    alone = np.vstack([model.encode([t]) for t in sentences[5:12]])
    odd = np.vstack([model.encode(sentences[i : i + 37]) for i in range(0, 111, 37)])
    assert np.array_equal(whole[:90], again)
    assert np.array_equal(whole[5:12], alone)
    assert np.array_equal(whole[:111], odd)
    assert np.allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)


def test_fp32_equals_sentence_transformers_encode(sentences, fp32_encoder):
    ours = fp32_encoder.encode(sentences)
    theirs = fp32_encoder.model.encode(sentences, batch_size=64, normalize_embeddings=True)
    assert (ours * theirs).sum(axis=1).min() > 0.99999


def test_bf16_is_close_to_fp32(sentences, bf16_encoder, fp32_encoder):
    cosine = (bf16_encoder.encode(sentences) * fp32_encoder.encode(sentences)).sum(axis=1)
    assert cosine.min() > 0.999
    assert not np.array_equal(
        bf16_encoder.encode(sentences[:3]), fp32_encoder.encode(sentences[:3])
    )


def test_int8_is_close_to_fp32(sentences, int8_encoder, fp32_encoder):
    """int8 weights and activations (``embed._to_int8``): near fp32, not the same."""
    int8, fp32 = int8_encoder.encode(sentences), fp32_encoder.encode(sentences)
    cosine = (int8 * fp32).sum(axis=1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.9
    assert not np.array_equal(int8, fp32)
    assert cache_namespace(int8_encoder) != cache_namespace(fp32_encoder)
    assert Settings(precision="int8").precision == "int8"


def test_cache_never_mixes_precisions(tmp_path, sentences, bf16_encoder, fp32_encoder):
    assert bf16_encoder.fingerprint == fp32_encoder.fingerprint
    assert cache_namespace(bf16_encoder) != cache_namespace(fp32_encoder)
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    texts = sentences[:20]
    first, encoded = embed_texts(texts, fp32_encoder, cache)
    assert encoded == 20
    second, encoded = embed_texts(texts, bf16_encoder, cache)
    assert encoded == 20 and not np.array_equal(first, second)
    third, encoded = embed_texts(texts, fp32_encoder, cache)
    assert encoded == 0 and np.array_equal(first, third)
    assert len(cache) == 40


def test_lazy_encoder_loads_the_model_on_first_use(tmp_path):
    lazy = load_encoder(lazy=True)
    assert lazy._model is None and len(lazy.fingerprint) == 16
    assert lazy.encode(["We trust each other now."]).shape == (1, 384)
    assert lazy._model is not None
    with pytest.raises(ModelError, match="cannot be loaded offline"):
        load_encoder(str(tmp_path / "no-such-model"), lazy=True)
    with pytest.raises(ModelError, match="precision"):
        load_encoder(precision="int4")
