"""Assign: suggest codes for units by cosine similarity to each code's prototype.

A code's prototype is its label, definition and example phrasings, embedded; its centroid stands
for the code. Similarity finds the topic but not the stance ("there's just no time" sits as close
to the enabler "Time invested in change" as to the inhibitor "Lack of time"), so a unit's score
for an enabler or inhibitor code is shifted along the codebook's own stance axis: the direction
from its inhibitor examples to its enabler examples (``stance_weight``). Suggestions keep a code
only above a calibrated ``threshold`` (a unit may stay uncoded: abstaining beats a wrong guess)
and at most ``top_k`` codes within ``relative_cutoff`` of the unit's best one. The settings are
tuned on the West seeds statements and NHS answers (scripts/tune_assign.py, docs/zero-shot.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook, applicable_to_units
from pipeline.embed import EmbeddingCache, Encoder, embed_texts
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.learn import LearnedCoder as TrainedCoder

SUGGESTION_COLUMNS = ["unit_id", "code_id", "score", "rank", "margin"]
OUT_OF_SCOPE = -1.0  # the score of a code that does not apply to a unit: the lowest cosine


KIND_SIGN = {"enabler": 1.0, "inhibitor": -1.0}


@dataclass(frozen=True)
class Prototypes:
    code_ids: list[str]
    centroids: np.ndarray  # (codes, dim), unit length
    examples: np.ndarray  # (all prototype texts, dim), grouped by code in code order
    example_starts: np.ndarray  # index of each code's first row in ``examples``
    signs: np.ndarray | None = None  # per code: +1 enabler, -1 inhibitor, 0 neither
    axis: np.ndarray | None = None  # unit-length stance direction (inhibitor -> enabler)


def kind_signs(kinds: list[str]) -> np.ndarray:
    """+1 for enabler codes, -1 for inhibitor codes, 0 for the rest (context, no kind)."""
    return np.asarray([KIND_SIGN.get(k, 0.0) for k in kinds], dtype=np.float32)


def stance_axis(vectors: np.ndarray, signs: np.ndarray) -> np.ndarray | None:
    """Direction from the inhibitor prototypes' mean to the enabler prototypes' mean.

    Pooled over every theme, the topic cancels out and what is left is how speakers sound when
    something helps versus when it gets in the way ("gave us", "really valued" against "no
    time", "never heard of", "lost"). None when the codebook has no enabler/inhibitor kinds.
    """
    if not (signs > 0).any() or not (signs < 0).any():
        return None
    direction = vectors[signs > 0].mean(axis=0) - vectors[signs < 0].mean(axis=0)
    return (direction / np.linalg.norm(direction)).astype(np.float32)


def build_prototypes(
    codebook: Codebook, encoder: Encoder, cache: EmbeddingCache | None = None, batch_size: int = 64
) -> Prototypes:
    texts: list[str] = []
    starts: list[int] = []
    for code in codebook.codes:
        starts.append(len(texts))
        texts.extend(code.prototype_texts())
    vectors, _ = embed_texts(texts, encoder, cache, batch_size)
    ends = [*starts[1:], len(texts)]
    centroids = np.vstack([vectors[s:e].mean(axis=0) for s, e in zip(starts, ends, strict=True)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    signs = kind_signs([code.kind for code in codebook.codes])
    per_text = np.repeat(signs, np.diff([*starts, len(texts)]))
    return Prototypes(
        codebook.ids,
        centroids.astype(np.float32),
        vectors,
        np.asarray(starts, dtype=np.int64),
        signs,
        stance_axis(vectors, per_text),
    )


def score_matrix(
    unit_vectors: np.ndarray,
    prototypes: Prototypes,
    example_weight: float,
    stance_weight: float | None = None,
) -> np.ndarray:
    """(units, codes) scores: similarity to each code, shifted by the unit's stance.

    ``stance_weight`` None means the setting's default, so every caller scores alike.
    """
    if len(unit_vectors) == 0:
        return np.zeros((0, len(prototypes.code_ids)), dtype=np.float32)
    if stance_weight is None:
        stance_weight = Settings.model_fields["stance_weight"].default
    # In float64, returned as float32: a float32 matrix product's last bit depends on how many
    # rows it has (OpenBLAS on AMD EPYC), so a unit's score would depend on which other units
    # share its chunk or run. A float64 product differs by ~1e-16 at most, which the float32
    # result (and the 6 decimals written) never shows in practice: an edited transcript
    # recomputed alone gets the scores a full run gives (tests/test_incremental.py).
    unit_vectors = unit_vectors.astype(np.float64)
    scores = unit_vectors @ prototypes.centroids.T.astype(np.float64)
    if example_weight:
        per_example = unit_vectors @ prototypes.examples.T.astype(np.float64)
        best_example = np.maximum.reduceat(per_example, prototypes.example_starts, axis=1)
        scores = (1.0 - example_weight) * scores + example_weight * best_example
    if stance_weight and prototypes.axis is not None and prototypes.signs is not None:
        stance = unit_vectors @ prototypes.axis.astype(np.float64)  # > 0: enabler, < 0: inhibitor
        scores = scores + stance_weight * np.outer(stance, prototypes.signs)
    return scores.astype(np.float32)


def code_scores(vectors: np.ndarray, prototypes: Prototypes, settings: Settings) -> np.ndarray:
    """``score_matrix`` with a run's settings: what flows, eval and code-segments should call."""
    return score_matrix(vectors, prototypes, settings.example_weight, settings.stance_weight)


def add_context(
    vectors: np.ndarray, transcript_ids: list[str], turn_indexes: list[int], weight: float
) -> np.ndarray:
    """Blend each unit's vector with its neighbours' in the same turn.

    A spoken sentence often makes its point only with the one before or after ("It fizzled
    out." needs "the Teams channel"). Adding the neighbours' vectors (weight ``weight``) lifts
    held-out micro-F1 on the sample gold from 0.25 to 0.33 and needs no extra encoding.
    """
    if weight == 0 or len(vectors) < 2:
        return vectors
    tid = np.asarray(transcript_ids, dtype=object)
    turn = np.asarray(turn_indexes)
    same = (tid[1:] == tid[:-1]) & (turn[1:] == turn[:-1])  # unit i and i+1 share a turn
    blended = vectors.astype(np.float32).copy()
    blended[1:] += weight * vectors[:-1] * same[:, None]
    blended[:-1] += weight * vectors[1:] * same[:, None]
    blended /= np.linalg.norm(blended, axis=1, keepdims=True)
    return blended


def suggest(
    scores: np.ndarray, unit_ids: list[str], code_ids: list[str], settings: Settings
) -> pd.DataFrame:
    """Suggestions (one row per unit and suggested code) from a score matrix."""
    if scores.size == 0:
        return pd.DataFrame(columns=SUGGESTION_COLUMNS)
    scores = np.round(scores.astype(np.float64), 6)  # stable output across BLAS differences
    # Rank codes per unit: highest score first; ties by codebook order (stable sort).
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    following = np.concatenate([ranked[:, 1:], np.full((len(ranked), 1), np.nan)], axis=1)
    margins = ranked - following
    keep = ranked >= settings.threshold
    keep &= ranked >= ranked[:, :1] - settings.relative_cutoff
    keep[:, settings.top_k :] = False
    rows, cols = np.nonzero(keep)
    code_array = np.asarray(code_ids, dtype=object)
    frame = pd.DataFrame(
        {
            "unit_id": np.asarray(unit_ids, dtype=object)[rows],
            "code_id": code_array[order[rows, cols]],
            "score": ranked[rows, cols],
            "rank": cols + 1,
            "margin": np.round(np.nan_to_num(margins[rows, cols], nan=ranked[rows, cols]), 6),
        }
    )
    return frame.reset_index(drop=True)


def top_codes(scores: np.ndarray, unit_ids: list[str], code_ids: list[str]) -> pd.DataFrame:
    """Each unit's best code and score, suggested or not (for thresholds and review order)."""
    if scores.size == 0:
        return pd.DataFrame(columns=["unit_id", "top_code", "top_score"])
    best = scores.argmax(axis=1)
    return pd.DataFrame(
        {
            "unit_id": unit_ids,
            "top_code": np.asarray(code_ids, dtype=object)[best],
            "top_score": np.round(scores[np.arange(len(best)), best].astype(np.float64), 6),
        }
    )


def embedded_mask(units: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Units whose vectors are needed: every unit of a coded speaker (short ones give context)."""
    if settings.code_interviewer:
        return np.ones(len(units), dtype=bool)
    return (units["speaker_kind"] == "participant").to_numpy()


def assign_units(
    units: pd.DataFrame,
    vectors: np.ndarray,
    prototypes: Prototypes,
    settings: Settings,
    coder: TrainedCoder | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Suggestions and each unit's best code, for units in reading order.

    ``vectors`` holds one row per unit selected by ``embedded_mask``. With a trained ``coder``
    (learned from reviewers' corrections), its codes decide by probability; see learn.py.
    """
    embedded = units[embedded_mask(units, settings)]
    blended = add_context(
        vectors,
        embedded["transcript_id"].tolist(),
        embedded["turn_index"].tolist(),
        settings.context_weight,
    )
    codable = embedded["codable"].to_numpy()
    scores = code_scores(blended[codable], prototypes, settings)
    ids = embedded.loc[codable, "unit_id"].tolist()
    texts = embedded.loc[codable, "text"].tolist()
    return suggest_scores(
        scores, blended[codable], ids, prototypes.code_ids, settings, coder, texts
    ), top_codes(scores, ids, prototypes.code_ids)


def suggest_scores(
    scores: np.ndarray,
    vectors: np.ndarray,
    ids: list[str],
    code_ids: list[str],
    settings: Settings,
    coder: TrainedCoder | None = None,
    texts: list[str] | None = None,
    attributes: list[dict[str, str]] | None = None,
) -> pd.DataFrame:
    """Zero-shot suggestions, or a trained coder's where one is given (it reads the units'
    ``texts`` and ``attributes`` beside their vectors)."""
    if coder is None:
        return suggest(scores, ids, code_ids, settings)
    probabilities = coder.probabilities(vectors, scores, texts, attributes)
    return coder.suggestions(probabilities, scores, ids, settings.top_k)


def code_texts(
    texts: list[str],
    ids: list[str],
    codebook: Codebook,
    encoder: Encoder,
    settings: Settings,
    cache: EmbeddingCache | None = None,
    coder: TrainedCoder | None = None,
    attributes: list[dict[str, str]] | None = None,
) -> pd.DataFrame:
    """Suggestions for free-standing texts (survey answers): ``segment_id, code, score, ...``.

    ``attributes``: one dict per text (e.g. ``{"question": "..."}``); codes scoped with
    ``applies_to`` are never suggested for texts outside their scope."""
    prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    vectors, _ = embed_texts([texts[i] for i in keep], encoder, cache, settings.batch_size)
    scores = code_scores(vectors, prototypes, settings)
    kept_ids = [ids[i] for i in keep]
    kept_attributes = None if attributes is None else [attributes[i] for i in keep]
    mask = None
    if kept_attributes is not None:
        mask = applicable_to_units(codebook, kept_attributes)
        scores = np.where(mask, scores, OUT_OF_SCOPE).astype(np.float32)
    answers = settings.model_copy(update={"threshold": settings.answer_threshold})
    frame = suggest_scores(
        scores,
        vectors,
        kept_ids,
        prototypes.code_ids,
        answers,
        coder,
        [texts[i] for i in keep],
        kept_attributes,
    )
    if mask is not None and len(frame):  # a trained coder decides by probability: drop here too
        row = pd.Series(range(len(kept_ids)), index=kept_ids)[frame["unit_id"]].to_numpy()
        col = pd.Series(range(len(prototypes.code_ids)), index=prototypes.code_ids)
        frame = frame[mask[row, col[frame["code_id"]].to_numpy()]].reset_index(drop=True)
    return frame.rename(columns={"unit_id": "segment_id", "code_id": "code"})
