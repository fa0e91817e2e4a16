"""Ingest: read anonymised transcripts (.txt/.md, .docx, .vtt, .srt) into plain data.

Every transcript becomes one plain ``text`` that all offsets point into, its participant
attributes, and its speaker turns. Raw speaker labels are normalised to ``Interviewer`` and
``Participant`` (or ``P1``, ``P2``... in group interviews), so a name used as a speaker label in
a Teams export never reaches an output.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pipeline import layouts
from pipeline.errors import Problem, QcodeError, SegmentsFileError, TranscriptError
from pipeline.layouts import LABEL  # noqa: F401  (other stages find labels with it)
from pipeline.paths import safe_file_stem

TRANSCRIPT_SUFFIXES = (".txt", ".md", ".docx", ".vtt", ".srt")
# A 45-minute interview is ~50 kB of text (a .docx a few hundred kB); 50 MB is no transcript.
MAX_BYTES = 50 * 1024 * 1024
ATTRIBUTES = ("interview_id", "role", "local_authority", "workstream", "network", "date")
EXPECTED_ATTRIBUTES = ("role", "local_authority", "workstream", "network", "date")

INTERVIEWER_LABELS = {
    "interviewer",
    "int",
    "i",
    "q",
    "question",
    "researcher",
    "evaluator",
    "facilitator",
    "moderator",
    "interviewer 1",
    "interviewer 2",
}
PARTICIPANT_LABELS = {"participant", "interviewee", "respondent", "r", "a", "answer"}
NUMBERED_PARTICIPANT = re.compile(r"^(?:P|R|Participant |Respondent )(\d{1,2})$", re.I)


@dataclass(frozen=True)
class Turn:
    """One speaker's contiguous speech; ``start:end`` is the speech without its label."""

    transcript_id: str
    index: int
    speaker: str
    speaker_kind: str  # "interviewer" or "participant"
    start: int
    end: int


@dataclass
class Transcript:
    transcript_id: str
    text: str
    attributes: dict[str, str]
    turns: list[Turn]
    source_path: str
    format: str
    sha256: str
    participants: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    first_line: int = 1  # line of the source file where ``text`` starts (after front matter)
    layout: str = ""  # how the turns were found: paragraphs, lines, timestamped, ... (layouts)

    def line_of(self, offset: int) -> int:
        """Line of the source file holding character ``offset`` of ``text`` (for messages)."""
        return self.first_line + self.text.count("\n", 0, offset)

    def attributes_for(self, speaker: str) -> dict[str, str]:
        """The transcript's attributes, overridden by the speaker's own (group interviews)."""
        merged = {k: v for k, v in self.attributes.items() if k != "participants"}
        merged.update(self.participants.get(speaker, {}))
        return merged


def _decode(data: bytes, path: Path) -> str:
    if not data.strip():
        raise TranscriptError("the file is empty", path)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif b"\x00" in data[:4096]:
        raise TranscriptError("this is not a text file (it contains binary data)", path)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise TranscriptError(
                "the text is not UTF-8; save the file as UTF-8 (in Word: Save As, "
                "Plain Text, Unicode UTF-8)",
                path,
                line,
            ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _stringify(value: object, depth: int = 0) -> object:
    """Attribute values as strings. YAML aliases can make a small block expand without limit
    (the "billion laughs"), so nesting is capped."""
    if depth > 6:
        raise ValueError("attributes nested too deeply")
    if isinstance(value, dict):
        return {str(k): _stringify(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > 1000:
            raise ValueError("an attribute holds too many values")
        return [_stringify(v, depth + 1) for v in value]
    return "" if value is None else str(value)


MAX_FRONT_MATTER = 64 * 1024  # attributes are a few lines; more is a pasted document
# libyaml's safe loader where PyYAML has it (its wheels do): the same values as the
# pure-Python loader, 10x faster (0.85 s against 0.09 s for 816 transcripts' attributes).
_FAST_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(block: str, loader: type) -> tuple[bool, object]:
    """(whether the block uses aliases, its value); aliases are not expanded."""
    if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(block, Loader=loader)):
        return True, None
    return False, yaml.load(block, Loader=loader) if block.strip() else {}


def _parse_yaml_block(block: str, path: Path, first_line: int, what: str) -> dict[str, object]:
    if len(block) > MAX_FRONT_MATTER:
        raise TranscriptError(
            f"the {what} is {len(block) // 1024} kB; attributes are a few short lines "
            "(is the closing '---' missing?)",
            path,
            first_line,
        )
    try:
        try:
            aliases, data = _read_yaml(block, _FAST_LOADER)
        except yaml.YAMLError:
            # Read again by the pure-Python loader: its messages and line numbers (libyaml's
            # put an unclosed bracket at the end of the block, not where it opened).
            aliases, data = _read_yaml(block, yaml.SafeLoader)
        if aliases:  # a few lines can expand into millions of values ("billion laughs")
            raise TranscriptError(
                f"the {what} uses YAML aliases (*name); write the values out", path, first_line
            )
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = first_line + mark.line if mark else first_line
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise TranscriptError(f"the {what} is not valid YAML ({problem})", path, line) from None
    except RecursionError:
        raise TranscriptError(f"the {what} is nested too deeply", path, first_line) from None
    if not isinstance(data, dict):
        raise TranscriptError(
            f"the {what} must be 'key: value' lines (e.g. 'role: Head teacher')", path, first_line
        )
    try:
        return _stringify(data)  # type: ignore[return-value]
    except (ValueError, RecursionError) as error:
        raise TranscriptError(f"the {what} is too complex ({error})", path, first_line) from None


def split_front_matter(text: str, path: Path) -> tuple[dict[str, object], str, int]:
    """Return (front matter, body, line number where the body starts)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text, 1
    for number, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            block = "\n".join(lines[1:number])
            body = "\n".join(lines[number + 1 :])
            return _parse_yaml_block(block, path, 2, "front matter"), body, number + 2
    raise TranscriptError(
        "the front matter opened with '---' on line 1 is never closed: add a line with "
        "'---' after the attributes",
        path,
        1,
    )


def _read_sidecar(path: Path) -> dict[str, object]:
    """Attributes in ``<name>.yaml`` beside a transcript (the only way for .vtt files)."""
    for candidate in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if candidate.is_file():
            text = _decode(candidate.read_bytes(), candidate)
            return _parse_yaml_block(text, candidate, 1, "attribute file")
    return {}


class _SpeakerNames:
    """Maps raw labels to anonymous, normalised speakers."""

    def __init__(self, raw_labels: list[str], meta: dict[str, object], guessed: str | None = None):
        declared = meta.get("speakers") or {}
        self.declared = (
            {str(k): str(v) for k, v in declared.items()} if isinstance(declared, dict) else {}
        )
        interviewers = meta.get("interviewers") or []
        self.interviewers = (
            {str(x).lower() for x in interviewers} if isinstance(interviewers, list) else set()
        )
        if guessed is not None:
            self.interviewers.add(guessed.lower())
        participants = meta.get("participants") or {}
        self.participants = set(participants) if isinstance(participants, dict) else set()
        self.mapping: dict[str, tuple[str, str]] = {}
        others = [r for r in dict.fromkeys(raw_labels) if self._fixed(r) is None]
        for number, raw in enumerate(others, start=1):
            label = "Participant" if len(others) == 1 else f"P{number}"
            self.mapping[raw] = (label, "participant")

    def _fixed(self, raw: str) -> tuple[str, str] | None:
        low = raw.strip().lower()
        if raw in self.declared:
            target = self.declared[raw]
            if target.lower() in INTERVIEWER_LABELS:
                return "Interviewer", "interviewer"
            return target, "participant"
        if (
            low in INTERVIEWER_LABELS
            or low in self.interviewers
            or re.match(r"^(interviewer|researcher|evaluator|facilitator)\b", low)
        ):
            return "Interviewer", "interviewer"
        if raw in self.participants:
            return raw, "participant"
        numbered = NUMBERED_PARTICIPANT.match(raw.strip())
        if numbered:
            return f"P{int(numbered.group(1))}", "participant"
        return None

    def __call__(self, raw: str) -> tuple[str, str]:
        return self._fixed(raw) or self.mapping[raw]


def _is_known_label(label: str, meta: dict[str, object]) -> bool:
    low = label.lower()
    declared = meta.get("speakers") or {}
    participants = meta.get("participants") or {}
    interviewers = meta.get("interviewers") or []
    return (
        low in INTERVIEWER_LABELS
        or low in PARTICIPANT_LABELS
        or bool(NUMBERED_PARTICIPANT.match(label))
        or (isinstance(declared, dict) and label in declared)
        or (isinstance(participants, dict) and label in participants)
        or (isinstance(interviewers, list) and low in {str(x).lower() for x in interviewers})
        or bool(re.match(r"^(interviewer|researcher|evaluator|facilitator)\b", low))
    )


def _guess_interviewer(
    turns: list[tuple[str, str]], meta: dict[str, object], path: Path, line: int
) -> tuple[str | None, list[Problem]]:
    """With no label that says who interviews ("Speaker 1", "Speaker 2"), the speaker most of
    whose turns are questions is read as the interviewer, and the guess is reported."""
    probe = _SpeakerNames([raw for raw, _ in turns], meta)
    if any(probe(raw)[1] == "interviewer" for raw, _ in turns) or len(probe.mapping) < 2:
        return None, []
    share = {}
    for raw in probe.mapping:
        said = [speech for label, speech in turns if label == raw]
        share[raw] = sum(s.rstrip().endswith("?") for s in said) / len(said)
    ranked = sorted(share.items(), key=lambda item: -item[1])
    if ranked[0][1] < 0.5 or ranked[0][1] == ranked[1][1]:
        return None, []
    guessed = ranked[0][0]
    first = next(number for number, (raw, _) in enumerate(turns) if raw == guessed)
    return guessed, [
        Problem(
            str(path),
            line,
            f"no speaker is labelled as the interviewer; the speaker of turn {first + 1}, who "
            f"asks the questions ({ranked[0][1]:.0%} of their turns end with '?'), is read as "
            "the interviewer. To be sure, name them in the front matter or a .yaml beside "
            "the file: 'interviewers: [<their label>]'",
        )
    ]


def _pre_label_problems(body: str, end: int, path: Path, first_line: int) -> list[Problem]:
    """One warning per paragraph of text before the first speaker label (a title, notes)."""
    problems = []
    in_paragraph = False
    for number, line in enumerate(body[:end].split("\n"), start=first_line):
        if line.strip() and not in_paragraph:
            problems.append(
                Problem(str(path), number, "text before the first speaker label is not coded")
            )
        in_paragraph = bool(line.strip())
    return problems


def parse_turns(
    transcript_id: str,
    body: str,
    meta: dict[str, object],
    path: Path,
    first_line: int,
) -> tuple[list[Turn], list[Problem], str]:
    """Find the layout of ``body`` and split it into turns with offsets into ``body``; return
    the turns, the problems found and the layout's name."""
    found = layouts.candidates(body, lambda label: _is_known_label(label, meta))
    chosen, problems = layouts.choose(found, body, path, first_line)
    if chosen is None:
        raise TranscriptError(
            "no speaker labels found: start each turn with the speaker and a colon, e.g. "
            "'Interviewer: ...' and 'Participant: ...' (timestamps before or after the "
            "speaker are fine, e.g. '[00:01:02] Speaker 1: ...')",
            path,
            first_line,
        )
    raw = layouts.raw_turns(body, chosen, first_line)
    first_offset = body.rfind("\n", 0, raw[0].start) + 1
    problems = _pre_label_problems(body, first_offset, path, first_line) + problems
    spans = []
    for turn in raw:
        segment = body[turn.start : turn.end]
        lead = len(segment) - len(segment.lstrip())
        trail = len(segment.rstrip())
        if trail > lead:
            spans.append((turn.label, turn.start + lead, turn.start + trail))
    guessed, guess_problems = _guess_interviewer(
        [(label, body[s:e]) for label, s, e in spans], meta, path, first_line
    )
    names = _SpeakerNames([t.label for t in raw], meta, guessed)
    turns = []
    for label, start, end in spans:
        speaker, kind = names(label)
        turns.append(Turn(transcript_id, len(turns), speaker, kind, start, end))
    if not any(t.speaker_kind == "participant" for t in turns):
        raise TranscriptError(
            "only interviewer turns were found, so there is nothing to code", path, first_line
        )
    return turns, problems + guess_problems, chosen.layout


def _docx_text(path: Path) -> str:
    """Paragraphs of a Word file as front matter + blank-line-separated paragraphs."""
    import docx  # python-docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as error:
        raise TranscriptError(
            f"this .docx cannot be opened as a Word document ({type(error).__name__}); "
            "re-save it from Word as .docx",
            path,
        ) from None
    except Exception as error:  # zipfile.BadZipFile, lxml errors from a corrupt package
        raise TranscriptError(
            f"this .docx is damaged and cannot be read ({type(error).__name__})", path
        ) from None
    paragraphs = [p.text.replace("\r", "") for p in document.paragraphs]
    while paragraphs and not paragraphs[0].strip():
        paragraphs.pop(0)
    if paragraphs and paragraphs[0].strip() == "---":
        for number, para in enumerate(paragraphs[1:], start=1):
            if para.strip() == "---":
                head = "\n".join(p for p in paragraphs[: number + 1])
                body = "\n\n".join(p.strip() for p in paragraphs[number + 1 :] if p.strip())
                return f"{head}\n{body}\n"
    return "\n\n".join(p.strip() for p in paragraphs if p.strip()) + "\n"


def _cue_transcript(
    text: str, path: Path, meta: dict[str, object], transcript_id: str, kind: str
) -> tuple[str, list[Turn], list[Problem]]:
    """Merge consecutive cues by speaker into turns and build 'Speaker: text' plain text.

    The speaker is the cue's voice tag (Teams: ``<v Name>``) or a label starting the cue's
    text (Zoom: ``Name: text``); a cue with neither continues the turn before it."""
    cues, problems = layouts.parse_cues(text, path, kind)
    labelled: list[tuple[str | None, str, int]] = []
    for cue in cues:
        match = layouts.LABEL.match(cue.text) if cue.voice is None else None
        label = layouts._label_of(match) if match else None
        if label:
            labelled.append((label, cue.text[match.end() :].strip(), cue.line))
        else:
            labelled.append((cue.voice, cue.text, cue.line))
    counts: dict[str, int] = {}
    for cue, (label, _, _) in zip(cues, labelled, strict=True):
        if label and cue.voice is None:
            counts[label] = counts.get(label, 0) + 1
    merged: list[tuple[str, str, int]] = []
    for cue, (label, speech, line) in zip(cues, labelled, strict=True):
        raw = label
        if cue.voice is None and label and counts[label] < 2 and not _is_known_label(label, meta):
            raw, speech = None, cue.text  # "Honestly: ..." once is speech, not a speaker
        if raw is None:
            if not merged:
                problems.append(Problem(str(path), line, "caption without a speaker is not coded"))
                continue
            raw = merged[-1][0]
        if not speech:
            continue
        if merged and merged[-1][0] == raw:
            merged[-1] = (raw, f"{merged[-1][1]} {speech}", merged[-1][2])
        else:
            merged.append((raw, speech, line))
    if not merged:
        raise TranscriptError(
            "no captions carry a speaker (a <v Name> voice tag or 'Name: ' before the text)", path
        )
    guessed, guess_problems = _guess_interviewer([(m[0], m[1]) for m in merged], meta, path, 1)
    names = _SpeakerNames([m[0] for m in merged], meta, guessed)
    parts: list[str] = []
    turns: list[Turn] = []
    offset = 0
    for raw, speech, _line in merged:
        speaker, kind_ = names(raw)
        prefix = f"{speaker}: "
        start = offset + len(prefix)
        turns.append(Turn(transcript_id, len(turns), speaker, kind_, start, start + len(speech)))
        block = prefix + speech
        parts.append(block)
        offset += len(block) + 2
    if not any(t.speaker_kind == "participant" for t in turns):
        raise TranscriptError("only interviewer captions were found, nothing to code", path)
    return "\n\n".join(parts) + "\n", turns, problems + guess_problems


def read_transcript(path: str | Path) -> Transcript:
    """Read one transcript; raise ``TranscriptError`` naming the file and line if unusable."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TRANSCRIPT_SUFFIXES:
        raise TranscriptError(
            f"'{suffix}' files are not read; use {', '.join(TRANSCRIPT_SUFFIXES)}", path
        )
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise TranscriptError(
                f"the file is {size / 1024 / 1024:.0f} MB; a transcript is far smaller (limit "
                f"{MAX_BYTES // 1024 // 1024} MB): is it the right file?",
                path,
            )
        data = path.read_bytes()
    except OSError as error:
        raise TranscriptError(f"cannot be read ({error.strerror})", path) from None
    sha = hashlib.sha256(data).hexdigest()
    content = (sha, _sidecar_sha256(path))
    kept = _READ.get(str(path))
    if kept is not None and kept[0] == content:
        return kept[1]
    transcript = _parse_transcript(path, suffix, data, sha)
    _READ[str(path)] = (content, transcript)
    while len(_READ) > READ_LIMIT:
        del _READ[next(iter(_READ))]
    return transcript


# The transcript this process last read from each file, with the exact content it came from
# (the file's bytes and its attribute file's, as hashes): a watching process (``qcode run
# --watch``) parses again only what changed. Parsing the 83 unchanged files of a 700-page corpus
# was 0.8 s of every edit. Content is compared exactly, so a kept transcript is never stale;
# an edited file's older version is let go. Callers never modify a transcript.
_READ: dict[str, tuple[tuple[str, str], Transcript]] = {}
READ_LIMIT = 20_000  # files


def _sidecar_sha256(path: Path) -> str:
    """Hash of the attribute file beside a transcript (its name and bytes), or ''."""
    for candidate in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        try:
            data = candidate.read_bytes()
        except OSError:
            continue
        return candidate.name + ":" + hashlib.sha256(data).hexdigest()
    return ""


def _parse_transcript(path: Path, suffix: str, data: bytes, sha: str) -> Transcript:
    """``read_transcript`` after reading the file: its turns, attributes and problems."""
    sidecar = _read_sidecar(path)
    if suffix in (".vtt", ".srt"):
        raw_text = _decode(data, path)
        kind = suffix.lstrip(".")
        if kind == "vtt" and not raw_text.lstrip().startswith("WEBVTT"):
            raise TranscriptError("a .vtt file must start with 'WEBVTT'", path, 1)
        meta = dict(sidecar)
        transcript_id = str(meta.get("interview_id") or path.stem)
        text, turns, problems = _cue_transcript(raw_text, path, meta, transcript_id, kind)
        first_line, layout = 1, kind  # line 1 of the text extracted from the captions
    else:
        raw_text = _docx_text(path) if suffix == ".docx" else _decode(data, path)
        front, body, first_line = split_front_matter(raw_text, path)
        meta = {**front, **sidecar}
        transcript_id = str(meta.get("interview_id") or path.stem)
        if not body.strip():
            raise TranscriptError("the transcript has attributes but no text", path, first_line)
        cues = layouts.detect_cues(body)
        if cues is not None:  # subtitles saved as .txt
            text, turns, problems = _cue_transcript(body, path, meta, transcript_id, cues)
            first_line, layout = 1, cues
        else:
            turns, problems, layout = parse_turns(transcript_id, body, meta, path, first_line)
            text = body
    participants_raw = meta.get("participants") or {}
    participants: dict[str, dict[str, str]] = {}
    if isinstance(participants_raw, dict):
        for speaker, attrs in participants_raw.items():
            if isinstance(attrs, dict):
                participants[str(speaker)] = {str(k): str(v) for k, v in attrs.items()}
    attributes = {
        k: str(v)
        for k, v in meta.items()
        if k not in ("participants", "speakers", "interviewers") and not isinstance(v, dict | list)
    }
    attributes["interview_id"] = transcript_id
    spoken = {t.speaker for t in turns if t.speaker_kind == "participant"}
    for key in EXPECTED_ATTRIBUTES:
        missing = [
            s
            for s in sorted(spoken)
            if not (attributes.get(key) or participants.get(s, {}).get(key))
        ]
        if missing:
            who = "" if missing == sorted(spoken) else f" for {', '.join(missing)}"
            problems.append(Problem(str(path), None, f"attribute '{key}' is missing{who}"))
    return Transcript(
        transcript_id=transcript_id,
        text=text,
        attributes=attributes,
        turns=turns,
        source_path=str(path),
        format=suffix.lstrip("."),
        sha256=sha,
        participants=participants,
        problems=problems,
        first_line=first_line,
        layout=layout,
    )


def find_transcripts(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise TranscriptError("folder not found", folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in TRANSCRIPT_SUFFIXES
        and not p.name.startswith((".", "~$"))
        and not p.stem.upper().startswith("README")
    )


def read_transcripts(
    folder: str | Path, on_error: str = "skip"
) -> tuple[list[Transcript], list[Problem]]:
    """Read every transcript in a folder; bad ones are skipped and reported (or stop the run)."""
    transcripts: list[Transcript] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}  # file name of each id's saved text -> the file it came from
    for path in find_transcripts(folder):
        try:
            transcript = read_transcript(path)
            stem = safe_file_stem(transcript.transcript_id).casefold()
            if stem in seen:
                raise TranscriptError(
                    f"interview_id '{transcript.transcript_id}' is also used by {seen[stem]}, "
                    "or differs from its id only in letter case or characters a file name "
                    "cannot hold; give each interview its own id",
                    path,
                )
        except QcodeError as error:
            if on_error == "stop":
                raise
            problems.append(Problem.from_error(error))
            continue
        except Exception as error:  # a reader's bug must not stop the other transcripts
            failure = TranscriptError(
                f"qcode could not read this file ({type(error).__name__}); it was skipped. "
                "Please report this, with the file if you can share it",
                path,
            )
            if on_error == "stop":
                raise failure from None
            problems.append(Problem.from_error(failure))
            continue
        seen[stem] = path.name
        transcripts.append(transcript)
        problems.extend(transcript.problems)
    return transcripts, problems


def read_segments_csv(
    path: str | Path, required: tuple[str, ...] = ("segment_id", "text")
) -> pd.DataFrame:
    """Pre-segmented text (survey answers, gold coding): ``segment_id,text`` at least."""
    path = Path(path)
    if not path.is_file():
        raise SegmentsFileError("file not found", path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SegmentsFileError("not UTF-8 text; save the CSV as UTF-8", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        message = str(error).strip().splitlines()[0]
        line_match = re.search(r"line (\d+)", message)
        line = int(line_match.group(1)) if line_match else None
        raise SegmentsFileError(f"not a readable CSV ({message})", path, line) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SegmentsFileError(
            f"missing column(s) {', '.join(missing)}; the first row must name the columns "
            f"(found: {', '.join(frame.columns) or 'none'})",
            path,
            1,
        )
    blank = frame.index[frame["segment_id"].str.strip() == ""]
    if len(blank):
        raise SegmentsFileError("segment_id is empty", path, int(blank[0]) + 2)
    duplicated = frame.index[frame["segment_id"].duplicated()]
    if len(duplicated):
        row = int(duplicated[0])
        first = int(frame.index[frame["segment_id"] == frame.at[row, "segment_id"]][0])
        raise SegmentsFileError(
            f"segment_id '{frame.at[row, 'segment_id']}' repeats the one on line {first + 2}",
            path,
            row + 2,
        )
    return frame
