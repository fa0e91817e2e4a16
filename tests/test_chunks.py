"""Chunked embedding and assignment give exactly the suggestions of coding all units at once."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.assign import ZeroShotCoder, assign_units, build_prototypes, embedded_mask
from pipeline.chunks import CHUNK_COLUMNS, code_chunk, combine, plan_chunks
from pipeline.embed import embed_texts
from pipeline.segment import segment, units_frame
from pipeline.settings import Settings


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
    # Exactly equal: scores are computed in float64 (``assign.score_matrix``), so a unit's
    # score does not depend on which other rows share its chunk (a float32 matrix product's
    # last bit can depend on its number of rows: seen on AMD EPYC with OpenBLAS).
    pd.testing.assert_frame_equal(suggestions, whole, check_exact=True)
    pd.testing.assert_frame_equal(best, whole_best, check_exact=True)
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
