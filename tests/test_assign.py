from __future__ import annotations

import numpy as np
import pytest

from pipeline.assign import build_prototypes, code_texts, score_matrix, suggest
from pipeline.settings import Settings


@pytest.fixture(scope="module")
def prototypes(codebook, encoder):
    return build_prototypes(codebook, encoder)


def test_prototypes_cover_every_code(prototypes, codebook):
    assert prototypes.code_ids == codebook.ids
    assert prototypes.centroids.shape == (len(codebook.ids), 384)
    assert len(prototypes.example_starts) == len(codebook.ids)


@pytest.mark.parametrize(
    ("sentence", "code"),
    [
        ("Honestly we trust each other now, it's a safe space to say what went wrong.", "ts.trust"),
        (
            "Lockdown meant everything moved online overnight when the schools closed.",
            "context.pandemic",
        ),
        (
            "Most teachers in my own school have never even heard of the network.",
            "process.reaching_teachers",
        ),
        (
            "There's just no time, with cover and report writing on top of everything else.",
            # ts.time and ts.time_pressure score within 0.001 of each other here (bf16 and
            # fp32 alike); either one of the Time codes in the top three is right.
            ("ts.time_pressure", "ts.time"),
        ),
    ],
)
def test_clear_sentences_get_their_code_first(sentence, code, encoder, prototypes):
    vector = encoder.encode([sentence])
    scores = score_matrix(vector, prototypes, Settings().example_weight)
    top3 = [prototypes.code_ids[i] for i in np.argsort(-scores[0])[:3]]
    accepted = code if isinstance(code, tuple) else (code,)
    assert set(accepted) & set(top3), top3


def test_suggest_threshold_top_k_and_margin():
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.1, 0.2, 0.15, 0.05]], dtype=np.float32)
    settings = Settings(threshold=0.4, top_k=2, relative_cutoff=1.0)
    frame = suggest(scores, ["u1", "u2"], ["a", "b", "c", "d"], settings)
    assert frame.to_dict(orient="records") == [
        {
            "unit_id": "u1",
            "code_id": "a",
            "score": pytest.approx(0.9),
            "rank": 1,
            "margin": pytest.approx(0.2),
        },
        {
            "unit_id": "u1",
            "code_id": "c",
            "score": pytest.approx(0.7),
            "rank": 2,
            "margin": pytest.approx(0.2),
        },
    ]  # u2 stays uncoded: nothing reaches the threshold


def test_relative_cutoff_drops_distant_second_codes():
    scores = np.array([[0.9, 0.5, 0.85]], dtype=np.float32)
    frame = suggest(scores, ["u"], ["a", "b", "c"], Settings(threshold=0.4, relative_cutoff=0.1))
    assert frame["code_id"].tolist() == ["a", "c"]


def test_assignment_is_deterministic(codebook, encoder):
    texts = ["We share resources on a Teams channel every week.", "It fizzled out after Easter."]
    first = code_texts(texts, ["a", "b"], codebook, encoder, Settings())
    second = code_texts(texts, ["a", "b"], codebook, encoder, Settings())
    assert first.equals(second)
    assert set(first.columns) >= {"segment_id", "code", "score", "rank", "margin"}
