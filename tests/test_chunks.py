"""Chunked embedding and assignment give exactly the suggestions of coding all units at once."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.assign import (
    DECISION_DECIMALS,
    ZeroShotCoder,
    assign_units,
    build_prototypes,
    embedded_mask,
    suggest,
)
from pipeline.chunks import CHUNK_COLUMNS, code_chunk, combine, plan_chunks
from pipeline.embed import embed_texts
from pipeline.segment import segment, units_frame
from pipeline.settings import Settings

# Float noise allowed between two ways of computing the same scores (BLAS kernels, batch shapes).
NOISE = 1e-5
# A score this close to a threshold, a cut-off or another code's score may fall either way.
SLACK = 10.0**-DECISION_DECIMALS + NOISE


def unexplained_differences(a: pd.DataFrame, b: pd.DataFrame, settings: Settings) -> list[str]:
    """Suggestions that differ between ``a`` and ``b`` (code set or rank) without a score
    within ``SLACK`` of the threshold, the relative cut-off or a tie: such a difference would
    mean chunking or float noise changed a decision that rounding should have kept stable."""
    both = a.merge(b, on=["unit_id", "code_id"], how="outer", suffixes=("_a", "_b"))
    scores = both["score_a"].fillna(both["score_b"])
    best = scores.groupby(both["unit_id"]).transform("max")
    problems = []
    for i, row in both.iterrows():
        if row["rank_a"] == row["rank_b"]:
            continue
        unit = scores[both["unit_id"] == row["unit_id"]].drop(i)
        near = [settings.threshold, best[i] - settings.relative_cutoff, *unit]
        if not any(abs(scores[i] - line) <= SLACK for line in near):
            where = f"{row['unit_id']} {row['code_id']}"
            problems.append(f"{where}: rank {row['rank_a']} vs {row['rank_b']}")
    return problems


@pytest.fixture(scope="module")
def sample_units(nlp, sample_transcripts):
    transcripts, _ = sample_transcripts
    return units_frame(segment(transcripts, nlp, Settings()), transcripts)


def test_chunks_cover_every_unit_and_cut_only_between_turns(sample_units):
    embedded = sample_units[embedded_mask(sample_units, Settings())].reset_index(drop=True)
    chunks = plan_chunks(embedded, 100)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(embedded)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert len(chunks) > 10
    for start, _stop in chunks[1:]:
        before, first = embedded.iloc[start - 1], embedded.iloc[start]
        assert (before.transcript_id, before.turn_index) != (first.transcript_id, first.turn_index)
    assert plan_chunks(embedded.iloc[:0], 100) == []
    # A turn longer than the chunk size stays whole.
    assert (
        len(plan_chunks(embedded, 1)) == embedded.groupby(["transcript_id", "turn_index"]).ngroups
    )


def test_chunked_suggestions_equal_all_at_once(sample_units, encoder, codebook, embedding_cache):
    settings = Settings()
    embedded = sample_units.loc[embedded_mask(sample_units, settings), CHUNK_COLUMNS]
    embedded = embedded.reset_index(drop=True)
    vectors, _ = embed_texts(embedded["text"].tolist(), encoder, embedding_cache)
    coder = ZeroShotCoder(build_prototypes(codebook, encoder, embedding_cache), settings)
    whole, whole_best = assign_units(sample_units, vectors, coder, settings)

    lookup = dict(zip(embedded["text"], vectors, strict=True))
    calls = []

    def factory():
        calls.append(1)
        return encoder

    results = []
    for start, stop in plan_chunks(embedded, 150):
        part = embedded.iloc[start:stop]
        # Half of each chunk's texts "cached", the rest encoded by the chunk itself.
        cached = {t: lookup[t] for t in part["text"].iloc[::2]}
        results.append(code_chunk(part, cached, coder, settings, factory))
    suggestions, best = combine(results)
    # Same units, codes and ranks, but for a score within rounding of a threshold or a tie
    # (none on this machine; possible on another); scores equal within BLAS rounding. A matrix
    # product's last bit can depend on how many rows it has (seen on AMD EPYC with OpenBLAS: a
    # margin of 0.010603 against 0.010602), so floats compare with a tolerance, never exactly.
    assert unexplained_differences(suggestions, whole, settings) == []
    same = suggestions.merge(whole, on=["unit_id", "code_id", "rank"], suffixes=("", "_whole"))
    assert len(same) >= 0.99 * len(whole) and len(suggestions) == pytest.approx(len(whole), 0.01)
    for column in ("score", "margin"):
        assert np.allclose(same[column], same[f"{column}_whole"], rtol=0, atol=NOISE)
    pd.testing.assert_frame_equal(best[["unit_id"]], whole_best[["unit_id"]])
    assert np.allclose(best["top_score"], whole_best["top_score"], rtol=0, atol=NOISE)
    assert len(results) > 5 and len(calls) == len(results)
    new = {t: v for r in results for t, v in zip(r.new_texts, r.new_vectors, strict=True)}
    assert all(np.array_equal(v, lookup[t]) for t, v in new.items())
    # Once the flow has saved them, a result keeps only the count: memory must not grow with
    # the number of chunks (a [:0] view would have kept every chunk's vectors alive).
    encoded = [len(r.new_texts) for r in results]
    for r in results:
        r.drop_new_vectors()
    assert [r.encoded for r in results] == encoded and sum(encoded) > 0
    assert all(r.new_vectors.nbytes == 0 and r.new_vectors.base is None for r in results)


def test_a_fully_cached_chunk_never_asks_for_the_model(sample_units, encoder, codebook):
    settings = Settings()
    part = sample_units.loc[embedded_mask(sample_units, settings), CHUNK_COLUMNS].head(40)
    cached = dict(zip(part["text"], encoder.encode(part["text"].tolist()), strict=True))
    coder = ZeroShotCoder(build_prototypes(codebook, encoder), settings)

    def no_model():
        raise AssertionError("the model was loaded for a cached chunk")

    result = code_chunk(part, cached, coder, settings, no_model)
    assert result.new_texts == [] and len(result.best) == int(part["codable"].sum())


def test_float_noise_does_not_change_codes_or_ranks():
    """Scores perturbed by noise of the size BLAS differences make (1e-6) keep every unit's
    codes and ranks, but for scores within rounding of a threshold or of another score."""
    settings = Settings()
    rng = np.random.default_rng(7)
    scores = rng.uniform(0.2, 0.7, size=(2000, 29)).astype(np.float32)
    noisy = scores + rng.uniform(-1e-6, 1e-6, size=scores.shape).astype(np.float32)
    ids = [f"u{i}" for i in range(len(scores))]
    codes = [f"c{j}" for j in range(scores.shape[1])]
    clean, perturbed = suggest(scores, ids, codes, settings), suggest(noisy, ids, codes, settings)
    assert len(clean) > 1000
    assert unexplained_differences(clean, perturbed, settings) == []
    same = clean.merge(perturbed, on=["unit_id", "code_id", "rank"])
    assert len(same) >= 0.99 * len(clean)
