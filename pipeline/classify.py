"""Classify: train a coder from people's coding and turn its probabilities into suggestions.

The learning itself lives in ``pipeline.learn`` (features, per-code models, thresholds,
saving); this module adds what a codebook and an encoder bring: the zero-shot scores every
model sees, and the codebook's examples as extra positives for their own code. ``TrainedCoder``
is the learned coder's public name for callers (flows, eval, the CLI).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.assign import build_prototypes, score_matrix
from pipeline.codebook import Codebook
from pipeline.embed import EmbeddingCache, Encoder, embed_texts
from pipeline.learn import (
    ClassifierError,
    LearnedCoder,
    Progress,
    Recipe,
    best_threshold,
    learn_coder,
)
from pipeline.settings import Settings

TrainedCoder = LearnedCoder
MIN_POSITIVES = Recipe().min_positives

__all__ = [
    "MIN_POSITIVES",
    "ClassifierError",
    "TrainedCoder",
    "best_threshold",
    "labels_matrix",
    "suggest_with_coder",
    "train_from_labelled",
]


def labels_matrix(code_lists: list[list[str]], code_ids: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(code_ids)}
    matrix = np.zeros((len(code_lists), len(code_ids)), dtype=bool)
    for row, codes in enumerate(code_lists):
        for code in codes:
            if code in index:
                matrix[row, index[code]] = True
    return matrix


def train_from_labelled(
    vectors: np.ndarray,
    code_lists: list[list[str]],
    codebook: Codebook,
    encoder: Encoder,
    settings: Settings,
    cache: EmbeddingCache | None = None,
    target_precision: float | None = None,
    texts: list[str] | None = None,
    attributes: list[dict[str, str]] | None = None,
    progress: Progress | None = None,
    recipe: Recipe | None = None,
) -> TrainedCoder:
    """Train a coder from people's coding of units (vectors as a run builds them).

    ``texts`` are the units' words (without them the coder learns from vectors and scores
    only); ``attributes`` what each unit was given, e.g. ``{"question": ...}``.
    """
    if len(code_lists) == 0:
        raise ClassifierError("there are no coded units to learn from yet")
    recipe = recipe or Recipe()
    if texts is None:
        recipe = Recipe(**{**recipe.__dict__, "words_weight": 0.0})
    prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
    example_texts, example_codes = [], []
    for code in codebook.codes:
        example_texts += list(code.examples)
        example_codes += [[code.id]] * len(code.examples)
    all_vectors = vectors
    all_texts = list(texts) if texts is not None else [""] * len(vectors)
    all_codes = list(code_lists)
    all_attributes = list(attributes) if attributes is not None else [{}] * len(vectors)
    if example_texts:
        example_vectors, _ = embed_texts(example_texts, encoder, cache, settings.batch_size)
        all_vectors = np.vstack([vectors, example_vectors])
        all_texts += example_texts
        all_codes += example_codes
        all_attributes += [{}] * len(example_texts)
    judged = np.arange(len(all_vectors)) < len(vectors)
    coder = learn_coder(
        all_vectors,
        score_matrix(all_vectors, prototypes, settings.example_weight),
        all_texts,
        labels_matrix(all_codes, codebook.ids),
        codebook.ids,
        encoder.fingerprint,
        codebook.sha256,
        attributes=all_attributes,
        recipe=recipe,
        target_precision=target_precision,
        progress=progress,
        judged=judged,
    )
    coder.info["context_weight"] = settings.context_weight
    coder.info["example_weight"] = settings.example_weight
    return coder


def suggest_with_coder(
    probabilities: np.ndarray,
    scores: np.ndarray,
    unit_ids: list[str],
    coder: TrainedCoder,
    settings: Settings,
) -> pd.DataFrame:
    """Suggestions where a code's probability reaches its threshold (at most top-k per unit)."""
    return coder.suggestions(probabilities, scores, unit_ids, settings.top_k)
