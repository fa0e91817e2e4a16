"""One coder interface: zero-shot and learned coders are asked and answer the same way, and
codes scoped with ``applies_to`` are never suggested where they do not apply."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline.assign import (
    ZeroShotCoder,
    assign_units,
    build_prototypes,
    code_texts,
    embedded_mask,
)
from pipeline.chunks import chunk_columns, code_chunk, combine, plan_chunks
from pipeline.classify import LearnedCoding, make_coder, train_from_labelled
from pipeline.codebook import Codebook, parse_codebook
from pipeline.coder import SUGGESTION_COLUMNS, Units
from pipeline.embed import embed_texts
from pipeline.segment import segment, units_frame
from pipeline.settings import Settings
from tests.conftest import CODEBOOK, SAMPLE

ROOT = SAMPLE.parent  # the repository: a fresh interpreter imports from here
SCOPED_CODE = "ts.trust"
EVERY_CODE = {"threshold": -1.0, "answer_threshold": -1.0, "top_k": 50, "relative_cutoff": 2.0}


def test_stages_import_no_cycle():
    """assign (zero-shot) knows nothing of learning; the interface module imports no stage."""
    code = (
        "import sys, pipeline.coder; "
        "assert not [m for m in sys.modules if m.startswith('pipeline.') and m not in "
        "('pipeline.coder',)], sorted(m for m in sys.modules if m.startswith('pipeline.')); "
        "import pipeline.assign; "
        "assert 'pipeline.learn' not in sys.modules and 'pipeline.classify' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def sample_units(nlp, sample_transcripts):
    transcripts, _ = sample_transcripts
    return units_frame(segment(transcripts, nlp, Settings()), transcripts)


@pytest.fixture(scope="module")
def trained(codebook, encoder, nlp, embedding_cache):
    from pipeline.evaluate import gold_in_context, load_gold

    gold = load_gold(SAMPLE / "gold", codebook)
    part = (gold["transcript_id"] == "WP-01").to_numpy()
    vectors, _ = gold_in_context(gold, SAMPLE, encoder, nlp, Settings(), embedding_cache)
    return train_from_labelled(
        vectors[part],
        gold.loc[part, "gold"].tolist(),
        codebook,
        encoder,
        Settings(),
        embedding_cache,
        texts=gold.loc[part, "text"].tolist(),
    )


def test_zero_shot_and_learned_coders_answer_the_same_way(
    codebook, encoder, embedding_cache, trained
):
    settings = Settings()
    prototypes = build_prototypes(codebook, encoder, embedding_cache)
    zero_shot = make_coder(prototypes, settings)
    learned = make_coder(prototypes, settings, trained)
    assert isinstance(zero_shot, ZeroShotCoder) and isinstance(learned, LearnedCoding)
    texts = [
        "There's just no time, with cover and report writing on top of everything else.",
        "The network gave us real trust in each other to try things.",
        "Can you hear me all right?",
    ]
    vectors, _ = embed_texts(texts, encoder, embedding_cache)
    units = Units(ids=["a", "b", "c"], vectors=vectors, texts=texts, answers=True)
    for coder in (zero_shot, learned):
        assert coder.code_ids == codebook.ids and coder.dimension == vectors.shape[1]
        suggested = coder.suggest(units)
        assert set(SUGGESTION_COLUMNS) <= set(suggested.table.columns)
        assert suggested.scores.shape == (3, len(codebook.ids))
        assert set(suggested.table["unit_id"]) <= {"a", "b", "c"}
        # code-segments' path (code_texts) asks the coder the same way and gets the same answer.
        via_texts = code_texts(
            texts, units.ids, codebook, encoder, settings, embedding_cache, coder
        )
        expected = suggested.table.rename(columns={"unit_id": "segment_id", "code_id": "code"})
        pd.testing.assert_frame_equal(via_texts, expected)
    assert "probability" in learned.suggest(units).table.columns
    # Both score with the same zero-shot similarity; only the decision differs.
    assert np.array_equal(zero_shot.suggest(units).scores, learned.suggest(units).scores)


def _scoped_codebook(scope: str) -> Codebook:
    text = CODEBOOK.read_text(encoding="utf-8")
    marker = f"  - id: {SCOPED_CODE}\n"
    assert marker in text
    return parse_codebook(text.replace(marker, marker + f"    applies_to: {scope}\n"))


def test_assign_units_suggests_a_scoped_code_only_where_it_applies(
    sample_units, codebook, encoder, embedding_cache, trained
):
    """Interview units carry their speaker's attributes: a code scoped to a role or workstream
    is suggested only to units of speakers with that role or workstream, by every coder, and
    chunk by chunk as in one go."""
    book = _scoped_codebook("{role: [Class teacher]}")
    settings = Settings(**EVERY_CODE)
    embedded = sample_units[embedded_mask(sample_units, settings)].reset_index(drop=True)
    vectors, _ = embed_texts(embedded["text"].tolist(), encoder, embedding_cache)
    prototypes = build_prototypes(book, encoder, embedding_cache)
    teacher = set(sample_units.loc[sample_units["role"] == "Class teacher", "unit_id"])
    codable = set(sample_units.loc[sample_units["codable"], "unit_id"])
    assert teacher & codable and codable - teacher
    for coder in (ZeroShotCoder(prototypes, settings), make_coder(prototypes, settings, trained)):
        suggestions, best = assign_units(sample_units, vectors, coder, settings)
        given = set(suggestions.loc[suggestions["code_id"] == SCOPED_CODE, "unit_id"])
        assert given and given <= teacher
        if isinstance(coder, ZeroShotCoder):  # every code is suggested: all of its scope
            assert given == teacher & codable
        assert not (best["top_code"] == SCOPED_CODE).loc[~best["unit_id"].isin(teacher)].any()
        chunk = embedded[chunk_columns(coder)]
        assert "role" in chunk.columns
        lookup = dict(zip(embedded["text"], vectors, strict=True))
        results = [
            code_chunk(chunk.iloc[a:b], lookup, coder, settings, lambda: encoder)
            for a, b in plan_chunks(chunk, 200)
        ]
        chunked, _ = combine(results)
        exact = ["unit_id", "code_id", "rank"]
        pd.testing.assert_frame_equal(chunked[exact], suggestions[exact])
    # Without applies_to the same code goes to every codable unit.
    unscoped = ZeroShotCoder(build_prototypes(codebook, encoder, embedding_cache), settings)
    everywhere, _ = assign_units(sample_units, vectors, unscoped, settings)
    assert set(everywhere.loc[everywhere["code_id"] == SCOPED_CODE, "unit_id"]) == codable


def test_a_code_scoped_to_an_attribute_units_lack_is_never_suggested(
    sample_units, encoder, embedding_cache
):
    """Interview units carry no 'question': a code scoped to questions is for survey answers
    (code-segments with a question column), never suggested to interview units."""
    book = _scoped_codebook("{question: [Q1]}")
    settings = Settings(**EVERY_CODE)
    embedded = sample_units[embedded_mask(sample_units, settings)]
    vectors, _ = embed_texts(embedded["text"].tolist(), encoder, embedding_cache)
    coder = ZeroShotCoder(build_prototypes(book, encoder, embedding_cache), settings)
    suggestions, _ = assign_units(sample_units, vectors, coder, settings)
    assert len(suggestions) and SCOPED_CODE not in set(suggestions["code_id"])
