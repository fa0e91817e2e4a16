"""Classify: train a coder from people's coding and turn its probabilities into suggestions.

The learning itself lives in ``pipeline.learn`` (features, per-code models, thresholds,
saving); this module adds what a codebook and an encoder bring: the zero-shot scores every
model sees, and the codebook's examples as extra positives for their own code. ``TrainedCoder``
is the learned model's public name; ``LearnedCoding`` wraps it as a ``pipeline.coder.Coder``,
and ``make_coder`` gives flows, eval and code-segments the coder their settings ask for.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.assign import Prototypes, ZeroShotCoder, build_prototypes, in_scope, score_matrix
from pipeline.codebook import Codebook
from pipeline.coder import Coder, Suggested, Units
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
from pipeline.tune import ENCODER_FOLDER, fine_tune, save_tuned

TrainedCoder = LearnedCoder
MIN_POSITIVES = Recipe().min_positives

__all__ = [
    "MIN_POSITIVES",
    "ClassifierError",
    "LearnedCoding",
    "TrainedCoder",
    "best_threshold",
    "labels_matrix",
    "load_trained",
    "make_coder",
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


def training_recipe(settings: Settings, recipe: Recipe | None = None) -> Recipe:
    """The recipe a training uses: ``recipe`` (default ``Recipe()``), with the encoder left
    frozen when the ``tune_encoder`` setting is off."""
    recipe = recipe or Recipe()
    if settings.tune_encoder:
        return recipe
    return Recipe(**{**recipe.__dict__, "encoder_steps": 0})


def tune_encoder(
    encoder: Encoder,
    texts: list[str],
    code_lists: list[list[str]],
    codebook: Codebook,
    recipe: Recipe,
    folder: Path,
    progress: Progress | None = None,
) -> Encoder:
    """The encoder a coder saved in ``folder`` learns and codes with.

    With ``recipe.encoder_steps`` the base ``encoder`` is fine-tuned on the people's coding
    (``pipeline.tune``) and saved as ``folder/encoder`` (replacing an older one); otherwise an
    older tuned encoder there is removed, so the coder reads the base model's vectors.
    Always tuned from the base model, never from an earlier tuning.
    """
    target = Path(folder) / ENCODER_FOLDER
    labels = labels_matrix(code_lists, codebook.ids)
    if not recipe.encoder_steps or not labels.any() or not hasattr(encoder, "model"):
        if target.exists():
            shutil.rmtree(target)
        return encoder
    model = fine_tune(
        encoder,  # type: ignore[arg-type]
        list(texts),
        labels,
        [f"{code.label}. {code.definition}" for code in codebook.codes],
        epochs=recipe.encoder_epochs,
        max_steps=recipe.encoder_steps,
        learning_rate=recipe.encoder_rate,
        progress=progress,
    )
    staging = Path(folder) / ".encoder-new"
    tuned = save_tuned(model, staging, getattr(encoder, "precision", "fp32"))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    tuned.path, tuned.setting = target, str(target)
    tuned.name = f"{encoder.name}, tuned on the coder's decisions"
    return tuned


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
    # Extra rows, learned from but never judged: the codebook's examples (they count towards
    # a code's positives) and each code's label + definition (they do not).
    extra_texts, extra_codes, counts = [], [], []
    for code in codebook.codes:
        extra_texts += list(code.examples)
        extra_codes += [[code.id]] * len(code.examples)
        counts += [True] * len(code.examples)
    for _ in range(recipe.definition_rows):
        for code in codebook.codes:
            extra_texts.append(f"{code.label}. {code.definition}")
            extra_codes.append([code.id])
            counts.append(False)
    all_vectors = vectors
    all_texts = list(texts) if texts is not None else [""] * len(vectors)
    all_attributes = list(attributes) if attributes is not None else [{}] * len(vectors)
    if extra_texts:
        extra_vectors, _ = embed_texts(extra_texts, encoder, cache, settings.batch_size)
        all_vectors = np.vstack([vectors, extra_vectors])
        all_texts += extra_texts
        all_attributes += [{}] * len(extra_texts)
    judged = np.arange(len(all_vectors)) < len(vectors)
    coder = learn_coder(
        all_vectors,
        score_matrix(all_vectors, prototypes, settings.example_weight),
        all_texts,
        labels_matrix(list(code_lists) + extra_codes, codebook.ids),
        codebook.ids,
        encoder.fingerprint,
        codebook.sha256,
        attributes=all_attributes,
        recipe=recipe,
        target_precision=target_precision,
        progress=progress,
        judged=judged,
        counted=np.concatenate([np.ones(len(vectors), dtype=bool), np.asarray(counts, bool)]),
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


@dataclass(frozen=True)
class LearnedCoding:
    """The learned coder as a ``pipeline.coder.Coder``: the zero-shot scores go in as features
    beside the vectors, words and attributes; each code decides by its probability. Codes out
    of a unit's ``applies_to`` scope are never suggested."""

    zero_shot: ZeroShotCoder
    model: TrainedCoder

    @property
    def code_ids(self) -> list[str]:
        return self.zero_shot.code_ids

    @property
    def dimension(self) -> int:
        return self.zero_shot.dimension

    @property
    def prototypes(self) -> Prototypes:
        return self.zero_shot.prototypes

    def suggest(self, units: Units) -> Suggested:
        scores, mask = self.zero_shot.scores(units)
        probabilities = self.model.probabilities(
            units.vectors, scores, units.texts, units.attributes
        )
        frame = self.model.suggestions(
            probabilities, scores, units.ids, self.zero_shot.settings.top_k
        )
        return Suggested(in_scope(frame, mask, units.ids, self.code_ids), scores)


def load_trained(folder: Path, code_ids: list[str], fingerprint: str) -> TrainedCoder:
    """The trained coder saved in ``folder``, checked against the codebook and the model."""
    model = TrainedCoder.load(folder)
    model.check_fits(code_ids, fingerprint, folder)
    return model


def make_coder(
    prototypes: Prototypes, settings: Settings, trained: TrainedCoder | None = None
) -> Coder:
    """The coder a run, ``qcode eval`` and ``code-segments`` use: zero-shot, or ``trained``."""
    zero_shot = ZeroShotCoder(prototypes, settings)
    return zero_shot if trained is None else LearnedCoding(zero_shot, trained)


def coder_for(
    codebook: Codebook,
    encoder: Encoder,
    settings: Settings,
    cache: EmbeddingCache | None = None,
    classifier: Path | None = None,
) -> Coder:
    """``make_coder`` from scratch: the codebook's prototypes, and the trained coder saved in
    ``classifier`` (None: zero-shot), checked against the codebook and the model."""
    trained = None
    if classifier is not None:  # a wrong folder fails before anything is encoded
        trained = load_trained(classifier, codebook.ids, encoder.fingerprint)
    prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
    return make_coder(prototypes, settings, trained)
