"""Learn: a coder that learns a codebook from people's decisions, on top of zero-shot.

Each code with at least ``min_positives`` people-coded units (3 by default) gets a ridge
regression (all codes at once, in dual form) over five feature blocks of a unit: its sentence
vector, its words (tf-idf of 1-2 word phrases, fitted on the people's units, first words crossed
with the question), its character n-grams (3-5, inside words), its zero-shot similarity to every
code, and the attributes it was given (e.g. the question a survey answer replies to). Codes with
fewer positives keep the zero-shot score, turned into a probability by one curve fitted on all
decisions. Thresholds come from leave-one-out probabilities of the people's units (one shared
threshold; a code's own once it has ``own_threshold_from`` positives).

Why this recipe: on the NHS benchmark (docs/quality.md) the words and the question carry what
similarity misses ("Nothing." to "What could we do better?" is praise), character n-grams catch
misspellings and word stems, and the blocks together beat each of the floors (tf-idf alone,
frozen vectors alone) at every number of labels.
Everything is saved as safetensors + JSON (no pickles) and is fingerprinted to the codebook and
the embedding model, so a coder cannot be used with vectors or codes it was not trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from pipeline.assign import decision_key
from pipeline.errors import QcodeError
from pipeline.settings import Settings

FORMAT_VERSION = 2
SUGGESTION_COLUMNS = ["unit_id", "code_id", "score", "rank", "margin", "probability"]
Progress = Callable[[str, int, int], None]


class ClassifierError(QcodeError):
    """A trained coder is missing, unreadable or does not fit this codebook or model."""

    code = "E800"
    fix = (
        "Train the coder again ('qcode train' or 'qcode retrain') with this codebook and model, "
        "or leave --classifier out to code zero-shot."
    )


@dataclass(frozen=True)
class Recipe:
    """How a coder learns: block weights, regularisation, and when a code gets a model."""

    vector_weight: float = 1.0
    words_weight: float = 1.0
    zero_shot_weight: float = 1.0
    attribute_weight: float = 1.0
    min_positives: int = 3
    question_words: int = 5  # first words crossed with each attribute ("Nothing" | question)
    own_threshold_from: int = 30  # positives a code needs for its own threshold (else shared)
    definition_rows: int = 2  # each code's label + definition, learned from as a positive
    chars_weight: float = 1.0  # tf-idf of character n-grams inside words (spelling, stems)
    char_min: int = 3
    char_max: int = 5
    penalties: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)  # ridge penalties to choose from
    penalty_per_code: bool = False  # each code its own penalty (by leave-one-out error)
    rbf_weight: float = 0.0  # a Gaussian kernel on sentence vectors beside the linear blocks
    rbf_gamma: float = 1.0
    # Fine-tuning the sentence encoder first (pipeline.tune); encoder_steps=0 leaves it frozen.
    encoder_steps: int = 80  # at most this many steps of 16 pairs (1,000 decisions in budget)
    encoder_epochs: int = 2
    encoder_rate: float = 1e-4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _counter(
    vocabulary: list[str] | None = None, chars: tuple[int, int] | None = None
) -> CountVectorizer:
    if chars:
        return CountVectorizer(
            analyzer="char_wb",
            ngram_range=chars,
            lowercase=True,
            vocabulary=vocabulary,
            dtype=np.float32,
        )
    return CountVectorizer(
        ngram_range=(1, 2),
        lowercase=True,
        token_pattern=r"(?u)\b\w+\b",  # keeps one-letter words: "A&E", "I"
        vocabulary=vocabulary,
        dtype=np.float32,
    )


def words_matrix(
    texts: list[str],
    vocabulary: list[str],
    idf: np.ndarray,
    chars: tuple[int, int] | None = None,
) -> sparse.csr_matrix:
    """tf-idf rows (sublinear counts, unit length) over a fixed vocabulary."""
    if not vocabulary:
        return sparse.csr_matrix((len(texts), 0), dtype=np.float32)
    counts = _counter(vocabulary, chars).transform(texts).tocsr().astype(np.float32)
    counts.data = 1.0 + np.log(counts.data)
    counts = counts.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ counts


def fit_words(
    texts: list[str], chars: tuple[int, int] | None = None
) -> tuple[list[str], np.ndarray]:
    """Vocabulary (1-2 word phrases, or character n-grams) and smoothed idf of the units."""
    if not any(t.strip() for t in texts):
        return [], np.zeros(0, dtype=np.float32)
    try:
        counts = _counter(chars=chars).fit(texts)
    except ValueError:  # only stop-characters
        return [], np.zeros(0, dtype=np.float32)
    vocabulary = counts.get_feature_names_out().tolist()
    present = (counts.transform(texts) > 0).sum(axis=0).A1
    idf = np.log((1 + len(texts)) / (1 + present)) + 1.0
    return vocabulary, idf.astype(np.float32)


def words_input(
    texts: list[str], attributes: list[dict[str, str]] | None, names: list[str], first: int
) -> list[str]:
    """Texts with their first words crossed with each attribute they were given.

    "Nothing." means praise to "What could we do better?" and a complaint to "What was good?":
    a linear model needs the pair as one feature (``a3xnothing``) to learn that.
    """
    if not first or not names or attributes is None:
        return texts
    column = {n: i for i, n in enumerate(names)}
    out = []
    for text, row in zip(texts, attributes, strict=True):
        tags = [f"a{column[f'{k}={v}']}" for k, v in (row or {}).items() if f"{k}={v}" in column]
        words = re.findall(r"\w+", text.lower())[:first]
        crossed = " ".join(f"{t}x{w}" for t in tags for w in words)
        out.append(f"{text} {crossed}" if crossed else text)
    return out


def attribute_names(attributes: list[dict[str, str]] | None) -> list[str]:
    """One feature per attribute value seen in training, e.g. ``question=How could we improve?``."""
    names = {f"{k}={v}" for row in attributes or [] for k, v in row.items() if v}
    return sorted(names)


def attribute_matrix(
    attributes: list[dict[str, str]] | None, names: list[str], rows: int
) -> sparse.csr_matrix:
    if not names:
        return sparse.csr_matrix((rows, 0), dtype=np.float32)
    column = {n: i for i, n in enumerate(names)}
    r, c = [], []
    for i, row in enumerate(attributes or []):
        for k, v in row.items():
            j = column.get(f"{k}={v}")
            if j is not None:
                r.append(i)
                c.append(j)
    data = np.ones(len(r), dtype=np.float32)
    return sparse.csr_matrix((data, (r, c)), shape=(rows, len(names)))


@dataclass
class LearnedCoder:
    """A coder learned from decisions: per-code models where people gave enough positives."""

    code_ids: list[str]
    vocabulary: list[str]
    idf: np.ndarray
    attributes: list[str]
    weights: np.ndarray  # (codes, features): vector, words, zero-shot scores, attributes
    bias: np.ndarray  # (codes,)
    learned: np.ndarray  # (codes,) bool: the code has its own model
    thresholds: np.ndarray  # (codes,) probability thresholds
    calibration: tuple[float, float]  # zero-shot codes: p = sigmoid(a * score + b)
    at_least_one: bool  # people coded (nearly) every unit: always suggest the best code
    recipe: Recipe
    model_fingerprint: str
    codebook_sha256: str
    info: dict = field(default_factory=dict)
    char_vocabulary: list[str] = field(default_factory=list)
    char_idf: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    # Gaussian-kernel part (recipe.rbf_weight): the learned-from vectors and, per code, the
    # weight of each (already scaled to the probability curve).
    support: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    support_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def needs_texts(self) -> bool:
        return bool(self.vocabulary or self.char_vocabulary) and bool(self.learned.any())

    def features(
        self,
        vectors: np.ndarray,
        scores: np.ndarray,
        texts: list[str] | None,
        attributes: list[dict[str, str]] | None = None,
    ) -> sparse.csr_matrix:
        return build_features(
            vectors,
            scores,
            texts,
            attributes,
            self.vocabulary,
            self.idf,
            self.attributes,
            self.recipe,
            (self.char_vocabulary, self.char_idf),
        )

    def probabilities(
        self,
        vectors: np.ndarray,
        scores: np.ndarray,
        texts: list[str] | None = None,
        attributes: list[dict[str, str]] | None = None,
    ) -> np.ndarray:
        """(units, codes) probabilities; learned codes by their model, others by zero-shot."""
        a, b = self.calibration
        fallback = _sigmoid(a * scores.astype(np.float64) + b)
        if not self.learned.any() or len(vectors) == 0:
            return fallback
        x = self.features(vectors, scores, texts, attributes)
        z = np.asarray(x @ self.weights.T) + self.bias
        if self.support.size:
            z = (
                z
                + rbf_kernel(vectors, self.support, self.recipe.rbf_gamma) @ self.support_weights.T
            )
        learned = _sigmoid(z)
        return np.where(self.learned, learned, fallback)

    def decide(self, probabilities: np.ndarray, top_k: int = 50) -> np.ndarray:
        """(units, codes) bool: codes at or over their threshold, at most ``top_k``."""
        keep = probabilities >= self.thresholds
        if self.at_least_one and len(probabilities):
            keep[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
        if top_k < probabilities.shape[1]:
            order = np.argsort(-probabilities, axis=1, kind="stable")
            ranked_keep = np.take_along_axis(keep, order, axis=1)
            ranked_keep &= np.cumsum(ranked_keep, axis=1) <= top_k
            keep = np.zeros_like(keep)
            np.put_along_axis(keep, order, ranked_keep, axis=1)
        return keep

    def suggestions(
        self, probabilities: np.ndarray, scores: np.ndarray, unit_ids: list[str], top_k: int
    ) -> pd.DataFrame:
        """One row per suggested code, ranked by probability; ``probability`` is the number
        that made the decision, ``score`` the zero-shot similarity beside it."""
        if probabilities.size == 0:
            return pd.DataFrame(columns=SUGGESTION_COLUMNS)
        probabilities = np.round(probabilities.astype(np.float64), 6)
        key = decision_key(probabilities)  # float noise cannot flip a decision or a rank
        keep = self.decide(key, top_k)
        order = np.argsort(-key, axis=1, kind="stable")
        ranked = np.take_along_axis(probabilities, order, axis=1)
        kept = np.take_along_axis(keep, order, axis=1)
        rank = np.cumsum(kept, axis=1)
        following = np.concatenate([ranked[:, 1:], np.zeros((len(ranked), 1))], axis=1)
        following = np.minimum(following, ranked)  # a tie at decision precision: margin 0
        rows, cols = np.nonzero(kept)
        codes = order[rows, cols]
        return pd.DataFrame(
            {
                "unit_id": np.asarray(unit_ids, dtype=object)[rows],
                "code_id": np.asarray(self.code_ids, dtype=object)[codes],
                "score": np.round(scores[rows, codes].astype(np.float64), 6),
                "rank": rank[rows, cols],
                "margin": np.round(ranked[rows, cols] - following[rows, cols], 6),
                "probability": ranked[rows, cols],
            }
        )

    # --- saving: safetensors for arrays, JSON for the rest --------------------------------
    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "weights": np.ascontiguousarray(self.weights, dtype=np.float32),
                "bias": self.bias.astype(np.float32),
                "learned": self.learned.astype(np.uint8),
                "thresholds": self.thresholds.astype(np.float32),
                "idf": self.idf.astype(np.float32),
                "char_idf": self.char_idf.astype(np.float32),
                "support": np.ascontiguousarray(self.support, dtype=np.float32),
                "support_weights": np.ascontiguousarray(self.support_weights, dtype=np.float32),
            },
            str(folder / "coder.safetensors"),
        )
        meta = {
            "format": FORMAT_VERSION,
            "code_ids": self.code_ids,
            "vocabulary": self.vocabulary,
            "char_vocabulary": self.char_vocabulary,
            "attributes": self.attributes,
            "calibration": list(self.calibration),
            "at_least_one": self.at_least_one,
            "recipe": asdict(self.recipe),
            "model_fingerprint": self.model_fingerprint,
            "codebook_sha256": self.codebook_sha256,
            "info": self.info,
        }
        (folder / "coder.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LearnedCoder:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            meta = json.loads((folder / "coder.json").read_text(encoding="utf-8"))
            if isinstance(meta, dict) and meta.get("format") != FORMAT_VERSION:
                raise ClassifierError(
                    "the trained coder was made by another qcode version; train it again", folder
                )
            arrays = load_file(str(folder / "coder.safetensors"))
        except FileNotFoundError:
            raise ClassifierError(
                "no trained coder here (coder.json and coder.safetensors); "
                "run 'qcode train' or 'qcode retrain' first",
                folder,
            ) from None
        except (ValueError, OSError, SafetensorError) as error:
            raise ClassifierError(f"the trained coder cannot be read ({error})", folder) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise ClassifierError(
                "the trained coder was made by another qcode version; train it again", folder
            )
        try:
            return cls(
                code_ids=list(meta["code_ids"]),
                vocabulary=list(meta["vocabulary"]),
                idf=arrays["idf"],
                attributes=list(meta["attributes"]),
                weights=arrays["weights"],
                bias=arrays["bias"],
                learned=arrays["learned"].astype(bool),
                thresholds=arrays["thresholds"],
                calibration=(float(meta["calibration"][0]), float(meta["calibration"][1])),
                at_least_one=bool(meta["at_least_one"]),
                recipe=Recipe(**meta["recipe"]),
                model_fingerprint=str(meta["model_fingerprint"]),
                codebook_sha256=str(meta["codebook_sha256"]),
                info=dict(meta.get("info") or {}),
                char_vocabulary=list(meta.get("char_vocabulary") or []),
                char_idf=arrays.get("char_idf", np.zeros(0, dtype=np.float32)),
                support=arrays.get("support", np.zeros((0, 0), dtype=np.float32)),
                support_weights=arrays.get("support_weights", np.zeros((0, 0), np.float32)),
            )
        except (KeyError, TypeError, IndexError) as error:
            raise ClassifierError(
                f"the trained coder is incomplete ({error}); train it again", folder
            ) from None

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


def build_features(
    vectors: np.ndarray,
    scores: np.ndarray,
    texts: list[str] | None,
    attributes: list[dict[str, str]] | None,
    vocabulary: list[str],
    idf: np.ndarray,
    names: list[str],
    recipe: Recipe,
    chars: tuple[list[str], np.ndarray] | None = None,
) -> sparse.csr_matrix:
    """The weighted blocks side by side (a block of weight 0 is left out)."""
    rows = len(vectors)
    blocks = []
    if recipe.vector_weight:
        blocks.append(sparse.csr_matrix(vectors.astype(np.float32) * recipe.vector_weight))
    if recipe.words_weight and vocabulary:
        if texts is None:
            raise ClassifierError("this trained coder needs the units' texts")
        words = words_input(texts, attributes, names, recipe.question_words)
        blocks.append(words_matrix(words, vocabulary, idf) * recipe.words_weight)
    if recipe.chars_weight and chars and chars[0]:
        if texts is None:
            raise ClassifierError("this trained coder needs the units' texts")
        span = (recipe.char_min, recipe.char_max)
        blocks.append(words_matrix(texts, chars[0], chars[1], span) * recipe.chars_weight)
    if recipe.zero_shot_weight:
        blocks.append(sparse.csr_matrix(scores.astype(np.float32) * recipe.zero_shot_weight))
    if recipe.attribute_weight and names:
        blocks.append(attribute_matrix(attributes, names, rows) * recipe.attribute_weight)
    if not blocks:
        return sparse.csr_matrix((rows, 0), dtype=np.float32)
    return sparse.hstack(blocks, format="csr", dtype=np.float32)


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


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma * squared distance) between the rows of ``a`` and of ``b``."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    distance = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.exp(-gamma * np.clip(distance, 0.0, None))


def _ridge(
    x: sparse.csr_matrix,
    y: np.ndarray,
    penalties: tuple[float, ...],
    per_code: bool = False,
    extra_kernel: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | list[float], np.ndarray]:
    """Multi-output ridge regression in its dual form, for every code at once.

    With at most a few thousand decisions the (units x units) kernel is small, so one
    eigendecomposition gives the fit for every penalty and the exact leave-one-out predictions
    (no refitting); the penalty is the one with the smallest leave-one-out error, over all
    codes or (``per_code``) for each code. ``extra_kernel`` (units x units) adds a kernel
    with no explicit features (the Gaussian one). Returns the weights (features x codes), the
    intercepts, the leave-one-out scores, the penalty (or one per code) and the dual weights.
    """
    mean = y.mean(axis=0)
    centred = y - mean
    kernel = np.asarray((x @ x.T).todense(), dtype=np.float64) + 1.0  # + 1: the intercept
    if extra_kernel is not None:
        kernel += extra_kernel
    values, vectors = np.linalg.eigh(kernel)
    values = np.clip(values, 0.0, None)
    projected = vectors.T @ centred
    fits = []
    for penalty in penalties:
        inverse = 1.0 / (values + penalty)
        alpha = vectors @ (inverse[:, None] * projected)
        diagonal = (vectors**2) @ inverse
        residual = alpha / diagonal[:, None]  # leave-one-out residuals
        fits.append(((residual**2).sum(axis=0), alpha, centred - residual))
    errors = np.stack([f[0] for f in fits])  # (penalties, codes)
    if per_code:
        choice = errors.argmin(axis=0)
        columns = np.arange(y.shape[1])
        alpha = np.stack([f[1] for f in fits])[choice, :, columns].T
        loo = np.stack([f[2] for f in fits])[choice, :, columns].T
        penalty: float | list[float] = [float(penalties[i]) for i in choice]
    else:
        best = int(errors.sum(axis=1).argmin())
        _, alpha, loo = fits[best]
        penalty = float(penalties[best])
    weights = np.asarray(x.T @ alpha)
    intercept = alpha.sum(axis=0) + mean  # the constant feature's weight, plus the mean
    return weights, intercept, loo + mean, penalty, alpha


def _calibration(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """One curve from zero-shot score to probability, all codes pooled."""
    y = labels.reshape(-1)
    if not y.any() or y.all():
        return 10.0, -10.0 * Settings().threshold  # p = 0.5 at the zero-shot threshold
    model = LogisticRegression(C=1.0).fit(scores.reshape(-1, 1).astype(np.float64), y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def learn_coder(
    vectors: np.ndarray,
    scores: np.ndarray,
    texts: list[str],
    labels: np.ndarray,
    code_ids: list[str],
    model_fingerprint: str,
    codebook_sha256: str,
    attributes: list[dict[str, str]] | None = None,
    recipe: Recipe | None = None,
    target_precision: float | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    judged: np.ndarray | None = None,
    counted: np.ndarray | None = None,
) -> LearnedCoder:
    """Fit per-code models on people's units; ``labels`` is a (units, codes) bool matrix.

    ``scores`` are the same units' zero-shot scores. Thresholds come from out-of-fold
    probabilities of the people's units, so a code is never judged on units it learned from.
    ``judged`` marks the people's rows when others (a codebook's examples) are only learned
    from: thresholds, the zero-shot curve and ``at_least_one`` come from judged rows alone.
    ``counted`` marks the rows whose positives count towards ``min_positives`` (default all).
    """
    recipe = recipe or Recipe()
    labels = np.asarray(labels, dtype=bool)
    n, n_codes = labels.shape
    judged = np.ones(n, dtype=bool) if judged is None else np.asarray(judged, dtype=bool)
    names = attribute_names(attributes) if recipe.attribute_weight else []
    vocabulary, idf = (
        fit_words(words_input(texts, attributes, names, recipe.question_words))
        if recipe.words_weight
        else ([], np.zeros(0, np.float32))
    )
    chars = (
        fit_words(texts, (recipe.char_min, recipe.char_max))
        if recipe.chars_weight
        else ([], np.zeros(0, np.float32))
    )
    x = build_features(vectors, scores, texts, attributes, vocabulary, idf, names, recipe, chars)
    counted = np.ones(n, dtype=bool) if counted is None else np.asarray(counted, dtype=bool)
    positives = labels[counted].sum(axis=0)
    learned = (positives >= recipe.min_positives) & (labels.sum(axis=0) < n)
    calibration = _calibration(scores[judged], labels[judged])
    weights = np.zeros((n_codes, x.shape[1]), dtype=np.float32)
    bias = np.zeros(n_codes, dtype=np.float32)
    todo = np.flatnonzero(learned)
    oof = _sigmoid(calibration[0] * scores.astype(np.float64) + calibration[1])
    penalty = None
    support = np.zeros((0, 0), dtype=np.float32)
    support_weights = np.zeros((0, 0), dtype=np.float32)
    if len(todo):
        if progress:
            progress("learning codes", 0, 1)
        extra = (
            recipe.rbf_weight**2 * rbf_kernel(vectors, vectors, recipe.rbf_gamma)
            if recipe.rbf_weight
            else None
        )
        w, b, loo, penalty, alpha = _ridge(
            x,
            labels[:, todo].astype(np.float64),
            tuple(recipe.penalties),
            recipe.penalty_per_code,
            extra,
        )
        # One curve from ridge score to probability, fitted on leave-one-out scores.
        curve = LogisticRegression(C=1.0).fit(
            loo[judged].reshape(-1, 1), labels[judged][:, todo].reshape(-1)
        )
        a, c0 = float(curve.coef_[0, 0]), float(curve.intercept_[0])
        weights[todo] = (a * w.T).astype(np.float32)
        bias[todo] = (a * b + c0).astype(np.float32)
        oof[:, todo] = _sigmoid(a * loo + c0)
        if extra is not None:
            support = vectors.astype(np.float32)
            support_weights = np.zeros((n_codes, n), dtype=np.float32)
            support_weights[todo] = (a * recipe.rbf_weight**2 * alpha.T).astype(np.float32)
        if progress:
            progress("learning codes", 1, 1)
    # Per-code thresholds where a code has enough positives to judge; one shared otherwise.
    oof, truth = oof[judged], labels[judged]
    shared = best_threshold(oof.ravel(), truth.ravel(), target_precision) if len(oof) else 0.5
    thresholds = np.full(n_codes, shared, dtype=np.float32)
    for c in todo:
        if truth[:, c].sum() >= recipe.own_threshold_from:
            thresholds[c] = best_threshold(oof[:, c], truth[:, c], target_precision)
    at_least_one = bool(len(truth)) and float(truth.any(axis=1).mean()) >= 0.95
    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labelled_units": int(judged.sum()),
        "positives_per_code": {code: int(truth[:, i].sum()) for i, code in enumerate(code_ids)},
        "learned_codes": [code for i, code in enumerate(code_ids) if learned[i]],
        "min_positives": recipe.min_positives,
        "penalty": penalty,
        "target": f"precision >= {target_precision}" if target_precision else "best F1",
        "thresholds": {code: round(float(thresholds[i]), 3) for i, code in enumerate(code_ids)},
    }
    return LearnedCoder(
        code_ids=list(code_ids),
        vocabulary=vocabulary,
        idf=idf,
        char_vocabulary=chars[0],
        char_idf=chars[1],
        support=support,
        support_weights=support_weights,
        attributes=names,
        weights=weights,
        bias=bias,
        learned=learned,
        thresholds=thresholds,
        calibration=calibration,
        at_least_one=at_least_one,
        recipe=recipe,
        model_fingerprint=model_fingerprint,
        codebook_sha256=codebook_sha256,
        info=info,
    )
