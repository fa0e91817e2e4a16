"""Classify: learn from people's coding on top of the zero-shot similarity.

Once reviewers have decided enough units (or a gold CSV is given), each code with enough
positive examples (``MIN_POSITIVES``) gets its own logistic regression over the unit's vector
and its zero-shot score, trained on the people's units plus the codebook's examples; codes with
too few keep the zero-shot rules, their score turned into a probability by one logistic curve
shared by all codes. On the sample gold this never does worse than zero-shot and helps once a
few hundred units are coded (see scripts/learning_curve.py). Per-code probability thresholds
are chosen by cross-validation to maximise F1 (or to reach a target precision). The trained
coder is saved as plain arrays and JSON (no pickles), so it can be inspected and loaded safely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from pipeline.assign import build_prototypes, score_matrix, suggest
from pipeline.codebook import Codebook
from pipeline.embed import EmbeddingCache, Encoder, embed_texts
from pipeline.errors import QcodeError
from pipeline.settings import Settings

MIN_POSITIVES = 10
FORMAT_VERSION = 1


class ClassifierError(QcodeError):
    """A trained coder is missing, unreadable or does not fit this codebook or model."""

    code = "E800"


@dataclass
class TrainedCoder:
    code_ids: list[str]
    weights: np.ndarray  # (codes, dim + 1): vector weights and the zero-shot score's weight
    bias: np.ndarray  # (codes,)
    learned: np.ndarray  # (codes,) bool: the code has its own model
    calibration: tuple[float, float]  # shared curve for the other codes: p = s(a * score + b)
    thresholds: np.ndarray  # (codes,) probability thresholds
    model_fingerprint: str
    codebook_sha256: str
    info: dict = field(default_factory=dict)

    def probabilities(self, vectors: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(units, codes) probabilities from unit vectors and their zero-shot scores."""
        a, b = self.calibration
        fallback = _sigmoid(a * scores + b)
        if not self.learned.any():
            return fallback
        learned = _sigmoid(
            vectors @ self.weights[:, :-1].T + scores * self.weights[:, -1] + self.bias
        )
        return np.where(self.learned, learned, fallback)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "coder.npz",
            weights=self.weights,
            bias=self.bias,
            learned=self.learned,
            thresholds=self.thresholds,
        )
        meta = {
            "format": FORMAT_VERSION,
            "code_ids": self.code_ids,
            "calibration": list(self.calibration),
            "model_fingerprint": self.model_fingerprint,
            "codebook_sha256": self.codebook_sha256,
            **self.info,
        }
        (folder / "coder.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TrainedCoder:
        try:
            meta = json.loads((folder / "coder.json").read_text(encoding="utf-8"))
            arrays = np.load(folder / "coder.npz")
        except FileNotFoundError:
            raise ClassifierError(
                "no trained coder here (coder.json and coder.npz); run 'qcode train' first", folder
            ) from None
        except (ValueError, OSError) as error:
            raise ClassifierError(f"the trained coder cannot be read ({error})", folder) from None
        if meta.get("format") != FORMAT_VERSION:
            raise ClassifierError(
                "the trained coder was made by another qcode version; train it again", folder
            )
        info = {
            k: v
            for k, v in meta.items()
            if k
            not in {"format", "code_ids", "calibration", "model_fingerprint", "codebook_sha256"}
        }
        return cls(
            meta["code_ids"],
            arrays["weights"],
            arrays["bias"],
            arrays["learned"].astype(bool),
            tuple(meta["calibration"]),
            arrays["thresholds"],
            meta["model_fingerprint"],
            meta["codebook_sha256"],
            info,
        )

    def check_fits(
        self, code_ids: list[str], model_fingerprint: str, where: Path | None = None
    ) -> None:
        if model_fingerprint != self.model_fingerprint:
            raise ClassifierError(
                "the trained coder was trained on vectors of another "
                "embedding model; train it again with this one",
                where,
            )
        if code_ids != self.code_ids:
            missing = sorted(set(code_ids) ^ set(self.code_ids))
            raise ClassifierError(
                "the trained coder was trained with other codes (differences: "
                f"{', '.join(missing[:5]) or 'order'}); train it again",
                where,
            )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def best_threshold(
    probabilities: np.ndarray, truth: np.ndarray, target_precision: float | None = None
) -> float:
    """Threshold with the best F1 (or the lowest one reaching a target precision)."""
    candidates = np.unique(np.round(probabilities, 3))
    best, best_value = 0.5, -1.0
    for t in candidates:
        predicted = probabilities >= t
        tp = float((predicted & truth).sum())
        fp = float((predicted & ~truth).sum())
        fn = float((~predicted & truth).sum())
        if target_precision is not None:
            precision = tp / (tp + fp) if tp + fp else 0.0
            value = tp if precision >= target_precision else -1.0
        else:
            value = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        if value > best_value:
            best, best_value = float(t), value
    return float(min(max(best, 0.05), 0.95))


def _folds(positives: int, negatives: int) -> int:
    return int(max(2, min(5, positives, negatives)))


def train_coder(
    vectors: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    code_ids: list[str],
    model_fingerprint: str,
    codebook_sha256: str,
    example_vectors: np.ndarray | None = None,
    example_labels: np.ndarray | None = None,
    example_scores: np.ndarray | None = None,
    min_positives: int = MIN_POSITIVES,
    target_precision: float | None = None,
    seed: int = 0,
) -> TrainedCoder:
    """Fit per-code models on labelled units (and codebook examples as extra positives).

    ``labels`` is a (units, codes) bool matrix of people's coding; ``scores`` the zero-shot
    scores of the same units. Thresholds are chosen on out-of-fold predictions of the
    labelled units only, never on the codebook examples.
    """
    n_codes = len(code_ids)
    dim = vectors.shape[1]
    weights = np.zeros((n_codes, dim + 1), dtype=np.float64)
    bias = np.zeros(n_codes)
    learned = np.zeros(n_codes, dtype=bool)
    thresholds = np.full(n_codes, 0.5)

    # The shared calibration curve: one feature (the zero-shot score), all codes pooled.
    pooled_x = scores.reshape(-1, 1)
    pooled_y = labels.reshape(-1)
    if pooled_y.any() and not pooled_y.all():
        platt = LogisticRegression(C=1.0).fit(pooled_x, pooled_y)
        calibration = (float(platt.coef_[0, 0]), float(platt.intercept_[0]))
        folds = _folds(int(pooled_y.sum()), int((~pooled_y).sum()))
        pooled_p = cross_val_predict(
            LogisticRegression(C=1.0),
            pooled_x,
            pooled_y,
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            method="predict_proba",
        )[:, 1]
        shared_threshold = best_threshold(pooled_p, pooled_y, target_precision)
    else:
        calibration, shared_threshold = (10.0, -4.2), 0.5  # ~ the zero-shot threshold 0.42
    thresholds[:] = shared_threshold

    has_examples = example_vectors is not None and len(example_vectors)
    for c in range(n_codes):
        y = labels[:, c]
        if int(y.sum()) < min_positives or int((~y).sum()) < min_positives:
            continue
        x = np.hstack([vectors, scores[:, c : c + 1]])
        fit_x, fit_y = x, y
        if has_examples:
            ex = np.hstack([example_vectors, example_scores[:, c : c + 1]])
            fit_x = np.vstack([x, ex])
            fit_y = np.concatenate([y, example_labels[:, c]])
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit(fit_x, fit_y)
        weights[c] = model.coef_[0]
        bias[c] = model.intercept_[0]
        learned[c] = True
        # Out-of-fold probabilities on the people's units choose the threshold.
        oof = np.zeros(len(y))
        splitter = StratifiedKFold(
            _folds(int(y.sum()), int((~y).sum())), shuffle=True, random_state=seed
        )
        for train_index, test_index in splitter.split(x, y):
            fold_x, fold_y = x[train_index], y[train_index]
            if has_examples:
                fold_x = np.vstack([fold_x, ex])
                fold_y = np.concatenate([fold_y, example_labels[:, c]])
            fold = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
            oof[test_index] = fold.fit(fold_x, fold_y).predict_proba(x[test_index])[:, 1]
        thresholds[c] = best_threshold(oof, y, target_precision)

    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labelled_units": len(labels),
        "positives_per_code": {code: int(labels[:, i].sum()) for i, code in enumerate(code_ids)},
        "learned_codes": [code for i, code in enumerate(code_ids) if learned[i]],
        "min_positives": min_positives,
        "target": f"precision >= {target_precision}" if target_precision else "best F1",
        "thresholds": {code: round(float(thresholds[i]), 3) for i, code in enumerate(code_ids)},
    }
    return TrainedCoder(
        code_ids,
        weights,
        bias,
        learned,
        calibration,
        thresholds,
        model_fingerprint,
        codebook_sha256,
        info,
    )


def suggest_with_coder(
    probabilities: np.ndarray,
    scores: np.ndarray,
    unit_ids: list[str],
    coder: TrainedCoder,
    settings: Settings,
) -> pd.DataFrame:
    """Suggestions: learned codes where the probability reaches the code's threshold; the
    other codes by the zero-shot rules. Ranked by probability; at most top-k per unit."""
    columns = ["unit_id", "code_id", "score", "rank", "margin", "probability"]
    if probabilities.size == 0:
        return pd.DataFrame(columns=columns)
    probabilities = np.round(probabilities.astype(np.float64), 6)
    zero_shot = suggest(scores, unit_ids, coder.code_ids, settings)
    column_of = {c: i for i, c in enumerate(coder.code_ids)}
    row_of = {u: i for i, u in enumerate(unit_ids)}
    keep = (probabilities >= coder.thresholds) & coder.learned
    for unit, code in zip(zero_shot["unit_id"], zero_shot["code_id"], strict=True):
        if not coder.learned[column_of[code]]:
            keep[row_of[unit], column_of[code]] = True
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    kept = np.take_along_axis(keep, order, axis=1)
    rank = np.cumsum(kept, axis=1)
    kept &= rank <= settings.top_k
    following = np.concatenate([ranked[:, 1:], np.zeros((len(ranked), 1))], axis=1)
    rows, cols = np.nonzero(kept)
    codes = order[rows, cols]
    return pd.DataFrame(
        {
            "unit_id": np.asarray(unit_ids, dtype=object)[rows],
            "code_id": np.asarray(coder.code_ids, dtype=object)[codes],
            "score": np.round(scores[rows, codes].astype(np.float64), 6),
            "rank": rank[rows, cols],
            "margin": np.round(ranked[rows, cols] - following[rows, cols], 6),
            "probability": ranked[rows, cols],
        }
    )


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
) -> TrainedCoder:
    """Train a coder from people's coding of units (vectors as a run builds them)."""
    if len(code_lists) == 0:
        raise ClassifierError("there are no coded units to learn from yet")
    prototypes = build_prototypes(codebook, encoder, cache, settings.batch_size)
    scores = score_matrix(vectors, prototypes, settings.example_weight)
    texts, codes = [], []
    for code in codebook.codes:
        texts += list(code.examples)
        codes += [[code.id]] * len(code.examples)
    example_vectors, _ = embed_texts(texts, encoder, cache, settings.batch_size)
    coder = train_coder(
        vectors,
        labels_matrix(code_lists, codebook.ids),
        scores,
        codebook.ids,
        encoder.fingerprint,
        codebook.sha256,
        example_vectors if texts else None,
        labels_matrix(codes, codebook.ids) if texts else None,
        score_matrix(example_vectors, prototypes, settings.example_weight) if texts else None,
        target_precision=target_precision,
    )
    coder.info["context_weight"] = settings.context_weight
    coder.info["example_weight"] = settings.example_weight
    return coder
