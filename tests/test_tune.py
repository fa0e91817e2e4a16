"""Tuning the encoder on people's coding (pipeline/tune.py), with the real bundled model."""

from __future__ import annotations

import numpy as np

from pipeline.classify import training_recipe, tune_encoder
from pipeline.codebook import load_codebook
from pipeline.embed import model_fingerprint
from pipeline.settings import Settings
from pipeline.tune import fine_tune, run_settings, tuned_encoder_path
from tests.conftest import CODEBOOK

TEXTS = [
    "We never had enough time to meet properly, everything was rushed.",
    "There was simply no time in the timetable for collaboration.",
    "Teachers trusted each other and shared openly.",
    "People felt safe to admit what was not working.",
]
CODES = [["ts.time_pressure"], ["ts.time_pressure"], ["ts.trust"], ["ts.trust"]]


def _cosines(model, book, texts, codes) -> np.ndarray:
    """Cosine of each text with the label + definition of its code, under ``model``."""
    definitions = {c.id: f"{c.label}. {c.definition}" for c in book.codes}
    a = model.encode(texts, normalize_embeddings=True)
    b = model.encode([definitions[c[0]] for c in codes], normalize_embeddings=True)
    return (a * b).sum(axis=1)


def test_tuning_moves_units_towards_their_codes_and_leaves_the_base_model(encoder):
    book = load_codebook(CODEBOOK)
    labels = np.array([[c.id in codes for c in book.codes] for codes in CODES])
    before = _cosines(encoder.model, book, TEXTS, CODES)
    tuned = fine_tune(
        encoder,
        TEXTS,
        labels,
        [f"{c.label}. {c.definition}" for c in book.codes],
        epochs=3,
        max_steps=3,
        batch_size=4,
    )
    after = _cosines(tuned, book, TEXTS, CODES)
    assert (after > before).all(), (before, after)
    # The base model is a copy's source, never changed itself.
    assert np.allclose(_cosines(encoder.model, book, TEXTS, CODES), before)


def test_a_bf16_encoder_is_tuned_in_fp32():
    """On CPUs with bf16 hardware the encoder computes in bfloat16 by default; tuning its
    bfloat16 weights lost most of each update. The tuned copy trains in fp32."""
    import torch

    from pipeline.embed import load_encoder

    encoder = load_encoder(precision="bf16")
    book = load_codebook(CODEBOOK)
    labels = np.array([[c.id in codes for c in book.codes] for codes in CODES])
    tuned = fine_tune(
        encoder, TEXTS, labels, [c.label for c in book.codes], max_steps=1, batch_size=4
    )
    assert {p.dtype for p in tuned.parameters()} == {torch.float32}
    assert any(p.dtype == torch.bfloat16 for p in encoder.model.parameters())  # left as it was


def test_saved_tuned_encoder_is_found_and_replaced(encoder, tmp_path):
    book = load_codebook(CODEBOOK)
    recipe = training_recipe(Settings())
    recipe = type(recipe)(**{**recipe.__dict__, "encoder_steps": 1})
    assert tuned_encoder_path(tmp_path) is None
    assert run_settings(Settings(classifier=tmp_path)).model == Settings().model
    tuned = tune_encoder(encoder, TEXTS, CODES, book, recipe, tmp_path)
    assert tuned_encoder_path(tmp_path) == tmp_path / "encoder"
    assert tuned.fingerprint == model_fingerprint(tmp_path / "encoder") != encoder.fingerprint
    assert run_settings(Settings(classifier=tmp_path)).model == str(tmp_path / "encoder")
    # Off: the old tuned encoder goes, so the coder reads the base model's vectors.
    off = training_recipe(Settings(tune_encoder=False), recipe)
    assert off.encoder_steps == 0
    assert tune_encoder(encoder, TEXTS, CODES, book, off, tmp_path) is encoder
    assert tuned_encoder_path(tmp_path) is None
