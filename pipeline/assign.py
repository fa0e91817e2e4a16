"""Assign: suggest codes for units by cosine similarity to each code's prototype.

A code's prototype is its label, definition and example phrasings, embedded; its centroid stands
for the code. Similarity finds the topic but not the stance ("there's just no time" sits as close
to the enabler "Time invested in change" as to the inhibitor "Lack of time"), so a unit's score
for an enabler or inhibitor code is shifted along the codebook's own stance axis: the direction
from its inhibitor examples to its enabler examples (``stance_weight``). Suggestions keep a code
only above a calibrated ``threshold`` (a unit may stay uncoded: abstaining beats a wrong guess)
and at most ``top_k`` codes within ``relative_cutoff`` of the unit's best one. The settings are
tuned on the West seeds statements and NHS answers (scripts/tune_assign.py, docs/zero-shot.md).
``ZeroShotCoder`` is this module's coder (``pipeline.coder.Coder``); it knows nothing of learned
coders, which build on it (``pipeline.classify``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.codebook import Code, Codebook, applicable_to_units
from pipeline.coder import SUGGESTION_COLUMNS, Coder, Suggested, Units
from pipeline.embed import EmbeddingCache, Encoder, embed_texts
from pipeline.settings import Settings

OUT_OF_SCOPE = -1.0  # the score of a code that does not apply to a unit: the lowest cosine
# Thresholds, cut-offs and ranks are decided on scores rounded to this many decimals, so that
# float noise of about 1e-6 (a text's vector and a matrix product's last bits depend on the
# batch and on the BLAS kernel) cannot change which codes a unit gets or their order, except
# for a score within rounding of a threshold or of a tie (docs/reports.md, "Reproducibility").
DECISION_DECIMALS = 4


KIND_SIGN = {"enabler": 1.0, "inhibitor": -1.0}


@dataclass(frozen=True)
class Prototypes:
    code_ids: list[str]
    centroids: np.ndarray  # (codes, dim), unit length
    examples: np.ndarray  # (all prototype texts, dim), grouped by code in code order
    example_starts: np.ndarray  # index of each code's first row in ``examples``
    signs: np.ndarray | None = None  # per code: +1 enabler, -1 inhibitor, 0 neither
    axis: np.ndarray | None = None  # unit-length stance direction (inhibitor -> enabler)
    codebook: Codebook | None = field(default=None, compare=False)  # for ``applies_to`` scopes

    def scope_mask(self, attributes: list[dict[str, str]] | None) -> np.ndarray | None:
        """(units, codes) bool: which codes apply to each unit; None when nothing is scoped
        (no attributes given, or no code of the codebook has ``applies_to``)."""
        if attributes is None or self.codebook is None or not self.codebook.scoped_by:
            return None
        return applicable_to_units(self.codebook, attributes)


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
    codebook: Codebook,
    encoder: Encoder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    texts_of: Callable[[Code], list[str]] = Code.prototype_texts,
) -> Prototypes:
    """Each code's prototype texts embedded, and their centroid. ``texts_of`` chooses the texts
    (``Code.prototype_texts``; scripts/prototype_dev.py compares other choices)."""
    texts: list[str] = []
    starts: list[int] = []
    for code in codebook.codes:
        starts.append(len(texts))
        texts.extend(texts_of(code))
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
        codebook,
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


def decision_key(values: np.ndarray) -> np.ndarray:
    """Scores or probabilities as decisions see them: rounded to ``DECISION_DECIMALS``."""
    return np.round(np.asarray(values, dtype=np.float64), DECISION_DECIMALS)


def suggest(
    scores: np.ndarray, unit_ids: list[str], code_ids: list[str], settings: Settings
) -> pd.DataFrame:
    """Suggestions (one row per unit and suggested code) from a score matrix."""
    if scores.size == 0:
        return pd.DataFrame(columns=SUGGESTION_COLUMNS)
    scores = np.round(scores.astype(np.float64), 6)  # what is shown and stored
    key = decision_key(scores)
    # Rank codes per unit: highest rounded score first; ties by codebook order (stable sort).
    order = np.argsort(-key, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    ranked_key = np.take_along_axis(key, order, axis=1)
    following = np.concatenate([ranked[:, 1:], np.full((len(ranked), 1), np.nan)], axis=1)
    margins = np.maximum(ranked - following, 0.0)  # a tie at decision precision: 0, not below
    keep = ranked_key >= round(settings.threshold, DECISION_DECIMALS)
    keep &= ranked_key >= decision_key(ranked_key[:, :1] - settings.relative_cutoff)
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
    best = decision_key(scores).argmax(axis=1)  # a tie goes to the first code, as in suggest
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


@dataclass(frozen=True)
class ZeroShotCoder:
    """The zero-shot coder (``pipeline.coder.Coder``): similarity to each code's prototype,
    kept above a threshold, at most ``top_k`` codes near the best one; codes out of a unit's
    ``applies_to`` scope are never suggested."""

    prototypes: Prototypes
    settings: Settings

    @property
    def code_ids(self) -> list[str]:
        return self.prototypes.code_ids

    @property
    def dimension(self) -> int:
        return int(self.prototypes.centroids.shape[1])

    def scores(self, units: Units) -> tuple[np.ndarray, np.ndarray | None]:
        """(units, codes) scores, out-of-scope codes at ``OUT_OF_SCOPE``; and the scope mask."""
        scores = code_scores(units.vectors, self.prototypes, self.settings)
        mask = self.prototypes.scope_mask(units.attributes)
        if mask is not None:
            scores = np.where(mask, scores, OUT_OF_SCOPE).astype(np.float32)
        return scores, mask

    def suggest(self, units: Units) -> Suggested:
        scores, mask = self.scores(units)
        settings = answer_settings(self.settings) if units.answers else self.settings
        frame = suggest(scores, units.ids, self.code_ids, settings)
        return Suggested(in_scope(frame, mask, units.ids, self.code_ids), scores)


def in_scope(
    frame: pd.DataFrame, mask: np.ndarray | None, ids: list[str], code_ids: list[str]
) -> pd.DataFrame:
    """Suggestions whose code applies to their unit (a threshold at or below ``OUT_OF_SCOPE``,
    or a coder deciding by probability, would keep the others)."""
    if mask is None or not len(frame):
        return frame
    row = pd.Series(range(len(ids)), index=ids)[frame["unit_id"]].to_numpy()
    col = pd.Series(range(len(code_ids)), index=code_ids)[frame["code_id"]].to_numpy()
    return frame[mask[row, col]].reset_index(drop=True)


def answer_settings(settings: Settings) -> Settings:
    """Settings for free-standing texts (survey answers): ``answer_threshold`` applies."""
    return settings.model_copy(update={"threshold": settings.answer_threshold})


def unit_attributes(units: pd.DataFrame, names: list[str]) -> list[dict[str, str]]:
    """Each unit's attributes among ``names`` (a unit without a column lacks that attribute)."""
    present = [n for n in names if n in units.columns]
    if not present:
        return [{} for _ in range(len(units))]
    return units[present].astype(str).to_dict("records")


def assign_units(
    units: pd.DataFrame, vectors: np.ndarray, coder: Coder, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Suggestions and each unit's best code, for units in reading order.

    ``vectors`` holds one row per unit selected by ``embedded_mask``; each is blended with its
    neighbours before ``coder`` (zero-shot or learned) reads it. The units' attributes (role,
    workstream, ... and any other column a code's ``applies_to`` names) scope the codes.
    """
    embedded = units[embedded_mask(units, settings)]
    blended = add_context(
        vectors,
        embedded["transcript_id"].tolist(),
        embedded["turn_index"].tolist(),
        settings.context_weight,
    )
    codable = embedded["codable"].to_numpy()
    chosen = embedded.loc[codable]
    batch = coded_units(chosen, blended[codable], scoped_by(coder))
    suggested = coder.suggest(batch)
    return suggested.table, top_codes(suggested.scores, batch.ids, coder.code_ids)


def scoped_by(coder: Coder) -> list[str]:
    """The attribute names the coder's codebook scopes codes by (none: no scoping)."""
    prototypes = getattr(coder, "prototypes", None)
    codebook = getattr(prototypes, "codebook", None)
    return codebook.scoped_by if codebook is not None else []


def coded_units(chosen: pd.DataFrame, vectors: np.ndarray, scoped: list[str]) -> Units:
    """``Units`` for transcript units (rows of a units table) and their final vectors."""
    return Units(
        ids=chosen["unit_id"].tolist(),
        vectors=vectors,
        texts=chosen["text"].tolist(),
        attributes=unit_attributes(chosen, scoped) if scoped else None,
    )


def code_texts(
    texts: list[str],
    ids: list[str],
    codebook: Codebook,
    encoder: Encoder,
    settings: Settings,
    cache: EmbeddingCache | None = None,
    coder: Coder | None = None,
    attributes: list[dict[str, str]] | None = None,
) -> pd.DataFrame:
    """Suggestions for free-standing texts (survey answers): ``segment_id, code, score, ...``.

    ``coder``: default zero-shot. ``attributes``: one dict per text (e.g.
    ``{"question": "..."}``); codes scoped with ``applies_to`` are never suggested for texts
    outside their scope."""
    if coder is None:
        prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
        coder = ZeroShotCoder(prototypes, settings)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    vectors, _ = embed_texts([texts[i] for i in keep], encoder, cache, settings.batch_size)
    units = Units(
        ids=[ids[i] for i in keep],
        vectors=vectors,
        texts=[texts[i] for i in keep],
        attributes=None if attributes is None else [attributes[i] for i in keep],
        answers=True,
    )
    frame = coder.suggest(units).table
    return frame.rename(columns={"unit_id": "segment_id", "code_id": "code"})
