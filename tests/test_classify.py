"""Learning from people's coding: a trained coder on top of the zero-shot similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.assign import build_prototypes, score_matrix, suggest
from pipeline.classify import (
    best_threshold,
    labels_matrix,
    suggest_with_coder,
    train_from_labelled,
)
from pipeline.settings import Settings
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def gold_vectors(codebook, encoder, nlp, embedding_cache):
    from pipeline.evaluate import gold_in_context, load_gold

    gold = load_gold(SAMPLE / "gold", codebook)
    vectors, _ = gold_in_context(gold, SAMPLE, encoder, nlp, Settings(), embedding_cache)
    return gold, vectors


def test_best_threshold_maximises_f1_or_reaches_precision():
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    truth = np.array([True, True, False, True, False, False])
    assert best_threshold(p, truth) == pytest.approx(0.4)
    assert best_threshold(p, truth, target_precision=1.0) == pytest.approx(0.8)


def test_codes_with_too_few_positives_keep_zero_shot(codebook, encoder, gold_vectors):
    from pipeline.learn import Recipe

    gold, vectors = gold_vectors
    part = (gold["transcript_id"] == "WP-01").to_numpy()
    # Every code of the sample codebook has 3 examples, so each would learn at the default 3;
    # a higher bar leaves some codes on zero-shot, which is what this test looks at.
    recipe = Recipe(min_positives=8)
    coder = train_from_labelled(
        vectors[part],
        gold.loc[part, "gold"].tolist(),
        codebook,
        encoder,
        Settings(),
        texts=gold.loc[part, "text"].tolist(),
        recipe=recipe,
    )
    positives = labels_matrix(gold.loc[part, "gold"].tolist(), codebook.ids).sum(axis=0)
    examples = np.array([len(c.examples) for c in codebook.codes])
    # People's units plus the codebook's examples count; the definitions do not.
    assert coder.learned.tolist() == ((positives + examples) >= 8).tolist()
    assert coder.learned.any() and not coder.learned.all()
    prototypes = build_prototypes(codebook, encoder)
    scores = score_matrix(vectors, prototypes, Settings().example_weight)
    p = coder.probabilities(vectors, scores, gold["text"].tolist())
    a, b = coder.calibration
    fallback = ~coder.learned
    assert np.allclose(p[:, fallback], 1 / (1 + np.exp(-(a * scores[:, fallback] + b))))
    found = suggest_with_coder(p, scores, gold["segment_id"].tolist(), coder, Settings())
    assert found["probability"].between(0, 1).all()


def test_learning_from_corrections_helps_on_held_out_interviews(codebook, encoder, gold_vectors):
    """Train on two gold interviews, measure on the two it never saw."""
    from pipeline.evaluate import agreement

    gold, vectors = gold_vectors
    train = gold["transcript_id"].isin(["WP-01", "WP-02"]).to_numpy()
    coder = train_from_labelled(
        vectors[train],
        gold.loc[train, "gold"].tolist(),
        codebook,
        encoder,
        Settings(),
        texts=gold.loc[train, "text"].tolist(),
    )
    assert coder.learned.sum() >= 5
    prototypes = build_prototypes(codebook, encoder)
    scores = score_matrix(vectors[~train], prototypes, Settings().example_weight)
    ids = gold.loc[~train, "segment_id"].tolist()
    truth = gold.loc[~train, "gold"].tolist()

    def f1(frame: pd.DataFrame) -> float:
        by = frame.groupby("unit_id")["code_id"].apply(list).to_dict()
        return agreement(truth, [by.get(i, []) for i in ids], codebook.ids).micro_f1

    before = f1(suggest(scores, ids, codebook.ids, Settings()))
    after = f1(
        suggest_with_coder(
            coder.probabilities(vectors[~train], scores, gold.loc[~train, "text"].tolist()),
            scores,
            ids,
            coder,
            Settings(),
        )
    )
    assert after > before


def test_labels_matrix():
    matrix = labels_matrix([["a"], [], ["a", "b", "zzz"]], ["a", "b"])
    assert matrix.tolist() == [[True, False], [False, False], [True, True]]


def test_train_and_code_segments_cli(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import CODEBOOK, write

    runner = CliRunner()
    out = tmp_path / "coder"
    result = runner.invoke(
        app,
        [
            "train",
            "--gold",
            str(SAMPLE / "gold" / "WP-07.csv"),
            "--codebook",
            str(CODEBOOK),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "coder.json").exists() and "Trained on 330 segments" in result.output
    answers = write(tmp_path / "a.csv", "segment_id,text\n1,We share resources every week.\n")
    result = runner.invoke(
        app,
        [
            "code-segments",
            str(answers),
            "--codebook",
            str(CODEBOOK),
            "--out",
            str(tmp_path / "o.csv"),
            "--classifier",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    coded = pd.read_csv(tmp_path / "o.csv")
    # The probability that made each decision is written beside the zero-shot score.
    assert list(coded.columns) == ["segment_id", "code", "score", "probability"]
    assert len(coded) >= 1 and coded["probability"].between(0, 1).all()
    result = runner.invoke(
        app,
        [
            "code-segments",
            str(answers),
            "--codebook",
            str(CODEBOOK),
            "--out",
            str(tmp_path / "o.csv"),
            "--classifier",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "no trained coder" in result.output
