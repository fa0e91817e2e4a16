from __future__ import annotations

from pipeline.ingest import read_transcript
from pipeline.segment import segment, segment_frame, unit_id, units_frame
from pipeline.settings import Settings
from tests.conftest import write

TEXT = """---
interview_id: S-1
role: Class teacher
---

Interviewer: What did the network give you? Be honest.

Participant: Confidence, mostly. I presented to two hundred teachers online. Yes.

It changed how I plan lessons, to be honest.

Interviewer: Great.
"""


def test_sentence_units_keep_exact_offsets(tmp_path, nlp):
    t = read_transcript(write(tmp_path / "s.md", TEXT))
    units = segment([t], nlp, Settings())
    assert [u.text for u in units if u.speaker_kind == "participant"] == [
        "Confidence, mostly.",
        "I presented to two hundred teachers online.",
        "Yes.",
        "It changed how I plan lessons, to be honest.",
    ]
    for u in units:
        assert t.text[u.start : u.end] == u.text
        assert u.unit_id == unit_id(u.transcript_id, u.start, u.end, u.text)


def test_interviewer_and_short_units_are_context_not_coded(tmp_path, nlp):
    t = read_transcript(write(tmp_path / "s.md", TEXT))
    units = segment([t], nlp, Settings())
    coded = {u.text for u in units if u.codable}
    assert "What did the network give you?" not in coded  # interviewer
    assert "Yes." not in coded  # shorter than min_unit_words
    assert "I presented to two hundred teachers online." in coded
    with_interviewer = segment([t], nlp, Settings(code_interviewer=True))
    assert "What did the network give you?" in {u.text for u in with_interviewer if u.codable}


def test_window_and_turn_units(tmp_path, nlp):
    t = read_transcript(write(tmp_path / "s.md", TEXT))
    windows = [
        u
        for u in segment([t], nlp, Settings(unit="window", window_size=2))
        if u.speaker_kind == "participant"
    ]
    assert windows[0].text == "Confidence, mostly. I presented to two hundred teachers online."
    turns = [u for u in segment([t], nlp, Settings(unit="turn")) if u.speaker_kind == "participant"]
    assert len(turns) == 1 and turns[0].text.endswith("to be honest.")
    for u in windows + turns:
        assert t.text[u.start : u.end] == u.text


def test_sentences_never_cross_paragraphs(tmp_path, nlp):
    text = "Interviewer: Go on.\n\nParticipant: We met every week\n\nand shared everything.\n"
    t = read_transcript(write(tmp_path / "p.txt", text))
    texts = [u.text for u in segment([t], nlp, Settings()) if u.speaker_kind == "participant"]
    assert texts == ["We met every week", "and shared everything."]


def test_sample_units_match_their_source(sample_transcripts, nlp):
    transcripts, _ = sample_transcripts
    units = segment(transcripts, nlp, Settings())
    by_id = {t.transcript_id: t for t in transcripts}
    assert len(units) > 1500
    assert len({u.unit_id for u in units}) == len(units)
    for u in units:
        assert by_id[u.transcript_id].text[u.start : u.end] == u.text
    frame = units_frame(units, transcripts)
    assert {"role", "local_authority", "workstream"} <= set(frame.columns)
    group = frame[frame["transcript_id"] == "WP-07"]
    assert set(group.loc[group["speaker"] == "P2", "local_authority"]) == {"LA-F"}


def test_segmenting_in_groups_gives_the_same_table(sample_transcripts, nlp):
    """The flow segments a group of transcripts at a time (memory); nothing else changes."""
    import pandas as pd

    transcripts, _ = sample_transcripts
    whole = units_frame(segment(transcripts, nlp, Settings()), transcripts)
    for group in (1, 3, 64):
        grouped = segment_frame(transcripts, nlp, Settings(), group=group)
        pd.testing.assert_frame_equal(grouped, whole)
    assert len(segment_frame([], nlp, Settings())) == 0
