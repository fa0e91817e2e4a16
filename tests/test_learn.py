"""The learned coder: what it learns from, how it is saved, and that it helps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.learn import ClassifierError, LearnedCoder, Recipe, learn_coder

FILLER = ["really", "today", "overall", "honestly", "again", "this time", "as usual", "so"]
# Three codes: staff (8 units), wait (8 units), parking (one unit: too few to learn from).
TEXTS = (
    [f"the staff were kind and caring {w}" for w in FILLER]
    + [f"we waited hours to be seen {w}" for w in FILLER]
    + ["parking was impossible", "nothing to add", "fine", "no comment"]
)
LABELS = np.zeros((len(TEXTS), 3), dtype=bool)
LABELS[:8, 0] = True
LABELS[8:16, 1] = True
LABELS[16, 2] = True


def _coder(recipe: Recipe | None = None) -> tuple[LearnedCoder, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(TEXTS), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rng.uniform(0.1, 0.5, size=(len(TEXTS), 3)).astype(np.float32)
    coder = learn_coder(
        vectors,
        scores,
        TEXTS,
        LABELS,
        ["staff", "wait", "parking"],
        "model-fp",
        "codebook-sha",
        attributes=[{"question": "why"}, {"question": "improve"}] * (len(TEXTS) // 2),
        recipe=recipe,
    )
    return coder, vectors, scores


def test_a_code_learns_from_its_first_three_positives_and_the_rest_keep_zero_shot():
    coder, vectors, scores = _coder()
    assert coder.learned.tolist() == [True, True, False]
    p = coder.probabilities(vectors, scores, TEXTS, [{"question": "why"}] * len(TEXTS))
    a, b = coder.calibration
    # The code with one positive keeps the zero-shot score, through the shared curve.
    assert np.allclose(p[:, 2], 1 / (1 + np.exp(-(a * scores[:, 2] + b))))
    # The learned codes found their own units from the words.
    assert p[:8, 0].min() > p[8:, 0].max()
    assert p[8:16, 1].min() > np.delete(p[:, 1], range(8, 16)).max()


def test_min_positives_is_the_rule():
    assert _coder(Recipe(min_positives=9))[0].learned.tolist() == [False, False, False]
    assert _coder(Recipe(min_positives=1))[0].learned.tolist() == [True, True, True]


@pytest.mark.parametrize(
    "recipe",
    [Recipe(chars_weight=0.0), Recipe(), Recipe(rbf_weight=1.0, penalty_per_code=True)],
    ids=["words", "chars", "gaussian-kernel"],
)
def test_saved_as_safetensors_and_json_and_loads_the_same(tmp_path, recipe):
    coder, vectors, scores = _coder(recipe)
    assert bool(coder.char_vocabulary) == bool(recipe.chars_weight)
    coder.save(tmp_path / "coder")
    assert sorted(p.name for p in (tmp_path / "coder").iterdir()) == [
        "coder.json",
        "coder.safetensors",
    ]
    again = LearnedCoder.load(tmp_path / "coder")
    attributes = [{"question": "improve"}] * len(TEXTS)
    assert np.allclose(
        again.probabilities(vectors, scores, TEXTS, attributes),
        coder.probabilities(vectors, scores, TEXTS, attributes),
        atol=1e-6,
    )
    assert again.attributes == ["question=improve", "question=why"]
    assert again.char_vocabulary == coder.char_vocabulary
    assert bool(again.support.size) == bool(recipe.rbf_weight)
    with pytest.raises(ClassifierError, match="another embedding model"):
        again.check_fits(["staff", "wait", "parking"], "other-fp")
    with pytest.raises(ClassifierError, match="other codes"):
        again.check_fits(["staff", "wait"], "model-fp")


def test_unreadable_or_missing_coder_is_a_clear_error(tmp_path):
    with pytest.raises(ClassifierError, match="no trained coder"):
        LearnedCoder.load(tmp_path / "nowhere")
    coder, _, _ = _coder()
    coder.save(tmp_path / "coder")
    (tmp_path / "coder" / "coder.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ClassifierError, match="cannot be read"):
        LearnedCoder.load(tmp_path / "coder")
    # A coder saved by the previous version (coder.npz + format 1) asks to be trained again.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "coder.json").write_text('{"format": 1, "code_ids": []}')
    with pytest.raises(ClassifierError, match="another qcode version"):
        LearnedCoder.load(tmp_path / "old")


def test_suggestions_carry_the_probability_that_decided():
    coder, vectors, scores = _coder()
    p = coder.probabilities(vectors, scores, TEXTS, None)
    frame = coder.suggestions(p, scores, [f"u{i}" for i in range(len(TEXTS))], top_k=3)
    assert set(frame.columns) >= {"unit_id", "code_id", "score", "probability"}
    for row in frame.itertuples():
        column = coder.code_ids.index(row.code_id)
        assert row.probability >= coder.thresholds[column] or coder.at_least_one
