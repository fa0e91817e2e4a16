"""Layouts: find the speaker turns in a transcript, whatever layout its author used.

People's transcripts come in a handful of layouts: a labelled paragraph per turn, one turn per
line, labels with timestamps (transcription services), a name-and-time line above the speech
(Otter, Zoom, Rev, Teams .docx), and subtitle files (.srt, .vtt). Each text layout has a small
parser that says which lines open a turn; the detector keeps the one that finds the most turns
and refuses a file where two layouts find about as many turns but disagree, rather than guess.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import Problem, TranscriptError

# Label text: a speaker name or role, up to 40 characters ("Head teacher", "Speaker 2",
# "Evaluator (University)"); the first character a letter, either case.
_NAME = r"[A-Za-z][A-Za-z0-9 .'’()/&-]{0,40}?"
# A speaker label opens a paragraph: "Interviewer: ...", "**P2:** ...", "head teacher: ...".
LABEL = re.compile(
    rf"^(?:\*\*)?(?P<label>{_NAME})(?:\*\*)?[ \t]*:(?:\*\*)?(?:[ \t]+|$)",
    re.MULTILINE,  # so that ^ matches at the start of every paragraph, not only the file
)
TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
_STAMP = rf"(?:\[{TIME}\]|\({TIME}\)|{TIME})"
# "[00:01:02] Speaker 1: text", "00:01:02 - Speaker 1: text", "Speaker 1 (00:01:02): text"
STAMPED = re.compile(
    rf"^[ \t]*(?:\*\*)?(?:{_STAMP}[ \t]*[-–|]?[ \t]*(?P<before>{_NAME})"
    rf"|(?P<after>{_NAME})[ \t]*[-–|]?[ \t]*{_STAMP})(?:\*\*)?[ \t]*:(?:\*\*)?(?:[ \t]+|$)"
)
# "Speaker 1  00:01:02" or "00:01:02 Speaker 1" alone on a line, the speech below it.
HEADING = re.compile(
    rf"^[ \t]*(?:\*\*)?(?:{_STAMP}[ \t]*[-–|]?[ \t]*(?P<before>{_NAME})"
    rf"|(?P<after>{_NAME})[ \t]*[-–|]?[ \t]*{_STAMP})(?:\*\*)?[ \t]*:?[ \t]*$"
)
LEADING_STAMP = re.compile(rf"(?:\[{TIME}\]|\({TIME}\))[ \t]*")
CUE_TIMING = re.compile(r"^\s*(?P<start>\S+)\s+-->\s+(?P<end>\S+)")
CUE_TIME = re.compile(r"^(?:\d+:)?\d{1,2}:\d{2}[.,]\d{3}$")

# Preference when two layouts find exactly the same turns (the simplest name wins).
LAYOUTS = ("paragraphs", "lines", "timestamped", "speaker-time")
LAYOUT_HELP = {
    "paragraphs": "'Interviewer: ...' at the start of each paragraph",
    "lines": "'Interviewer: ...' at the start of each line",
    "timestamped": "a timestamp and label on each turn, e.g. '[00:01:02] Speaker 1: ...'",
    "speaker-time": "a line with the speaker and a time, e.g. 'Speaker 1  00:01:02', then speech",
}
MAX_LABEL_WORDS = 4


@dataclass(frozen=True)
class RawTurn:
    """A turn as written: the label in the file and where its speech is in the text."""

    label: str
    start: int
    end: int
    line: int  # 1-based line of the file where the turn's label is


@dataclass
class _Opening:
    line: int  # index into the body's lines
    label: str
    speech: int  # offset where the speech starts


@dataclass
class Candidate:
    layout: str
    openings: list[_Opening]

    @property
    def lines(self) -> set[int]:
        return {o.line for o in self.openings}


def _lines(body: str) -> list[tuple[int, str]]:
    """(offset, text) of each line of ``body`` (newlines are '\\n' after decoding)."""
    out, offset = [], 0
    for line in body.split("\n"):
        out.append((offset, line))
        offset += len(line) + 1
    return out


def _label_of(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    label = (groups.get("label") or groups.get("before") or groups.get("after") or "").strip()
    label = label.strip("*").strip()
    if not label or len(label.split()) > MAX_LABEL_WORDS:
        return None
    return label


def _candidate(
    layout: str,
    lines: list[tuple[int, str]],
    match: Callable[[int, str], re.Match[str] | None],
    known: Callable[[str], bool],
) -> Candidate:
    """The turn openings one layout finds. A label counts if it is a known speaker word or is
    used for at least two turns: "Honestly: ..." inside an answer is not a speaker."""
    found: list[_Opening] = []
    for index, (offset, text) in enumerate(lines):
        m = match(index, text)
        label = _label_of(m) if m else None
        if m and label:
            stamp = LEADING_STAMP.match(text, m.end())  # "Interviewer: [00:01:02] speech"
            found.append(_Opening(index, label, offset + (stamp.end() if stamp else m.end())))
    counts: dict[str, int] = {}
    for o in found:
        counts[o.label] = counts.get(o.label, 0) + 1
    return Candidate(layout, [o for o in found if counts[o.label] >= 2 or known(o.label)])


def candidates(body: str, known: Callable[[str], bool]) -> list[Candidate]:
    """What each text layout makes of ``body``."""
    lines = _lines(body)
    starts = {
        i for i, (_, t) in enumerate(lines) if t.strip() and (i == 0 or not lines[i - 1][1].strip())
    }
    paragraphs = _candidate(
        "paragraphs", lines, lambda i, t: LABEL.match(t) if i in starts else None, known
    )
    by_line = _candidate("lines", lines, lambda _i, t: LABEL.match(t), known)
    speakers = {o.label for o in paragraphs.openings}
    if len(speakers) >= 2:
        # Turns are paragraphs here: inside one, only those speakers (or a known speaker word)
        # open a turn; "Step: ..." twice in an answer is speech.
        by_line.openings = [o for o in by_line.openings if o.label in speakers or known(o.label)]
    return [
        paragraphs,
        by_line,
        _candidate("timestamped", lines, lambda _i, t: STAMPED.match(t), known),
        _candidate("speaker-time", lines, lambda _i, t: HEADING.match(t), known),
    ]


def _first_lines(body: str, first_line: int, count: int = 6) -> str:
    shown = []
    for number, line in enumerate(body.split("\n"), start=first_line):
        if line.strip():
            text = line.rstrip()
            shown.append(f"  {number:>4} | {text[:90]}{'…' if len(text) > 90 else ''}")
        if len(shown) == count:
            break
    return "\n".join(shown)


class LayoutError(TranscriptError):
    """Two layouts explain a file about equally well and disagree: refuse, don't guess.

    The first lines of the file are shown in the message (on the terminal) but are not part
    of ``problem``, which is kept in run reports and logs."""

    code = "E101"
    fix = (
        "Use one speaker label style for every turn in the file (the first lines are shown), or "
        "remove the lines that look like another layout's labels."
    )

    def __init__(self, problem: str, path: Path, line: int, excerpt: str):
        self.excerpt = excerpt
        super().__init__(problem, path, line)

    @property
    def message(self) -> str:
        return f"{super().message}\nThe file begins:\n{self.excerpt}"


def choose(
    found: list[Candidate], body: str, path: Path, first_line: int
) -> tuple[Candidate | None, list[Problem]]:
    """The layout that finds the most turns; None if no layout finds any.

    A layout whose turn openings are all among the chosen one's (labelled paragraphs inside
    one-turn-per-line text) agrees with it. One that opens turns elsewhere, nearly as many
    (at least half as many), makes the file ambiguous; fewer are reported as warnings."""
    usable = [c for c in found if c.openings]
    if not usable:
        return None, []
    best = max(usable, key=lambda c: (len(c.openings), -LAYOUTS.index(c.layout)))
    problems: list[Problem] = []
    for rival in usable:
        extra = sorted(rival.lines - best.lines)
        if not extra:
            continue
        if len(rival.openings) >= max(2, len(best.openings) / 2):
            raise LayoutError(
                f"the speaker labels are ambiguous: {len(best.openings)} turns read as "
                f"{best.layout} ({LAYOUT_HELP[best.layout]}) and {len(rival.openings)} as "
                f"{rival.layout} ({LAYOUT_HELP[rival.layout]}) disagree. Fix: use one "
                "label style for every turn, e.g. 'Interviewer: ...' and 'Participant: ...' at "
                "the start of each turn's line",
                path,
                first_line,
                _first_lines(body, first_line),
            )
        where = ", ".join(str(first_line + i) for i in extra[:5])
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        problems.append(
            Problem(
                str(path),
                first_line + extra[0],
                f"line(s) {where}{more} look like {rival.layout} speaker labels but the file "
                f"is read as {best.layout}, so they are kept as speech of the turn before",
            )
        )
    return best, problems


def raw_turns(body: str, chosen: Candidate, first_line: int) -> list[RawTurn]:
    """Each opening's speech runs to the start of the next opening's line."""
    lines = _lines(body)
    out = []
    for number, opening in enumerate(chosen.openings):
        following = chosen.openings[number + 1] if number + 1 < len(chosen.openings) else None
        end = lines[following.line][0] if following else len(body)
        out.append(RawTurn(opening.label, opening.speech, end, first_line + opening.line))
    return out


def detect_cues(body: str) -> str | None:
    """'vtt' or 'srt' when a .txt/.md file holds subtitles (saved under the wrong name)."""
    head = body.lstrip("\ufeff \t\n")
    if head.startswith("WEBVTT"):
        return "vtt"
    first = [line.strip() for line in head.split("\n", 3)[:2]]
    if len(first) == 2 and first[0].isdigit() and CUE_TIMING.match(first[1]):
        return "srt"
    return None


@dataclass(frozen=True)
class Cue:
    voice: str | None
    text: str
    line: int


_TAG = re.compile(r"<[^>]*>")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?[ \t]+([^>]+)>")


def parse_cues(text: str, path: Path, kind: str) -> tuple[list[Cue], list[Problem]]:
    """Cues of a .vtt or .srt file. A cue with broken timing keeps its text and is reported;
    text outside any cue is reported and not coded; a file with no readable cue is refused."""
    name = "WebVTT" if kind == "vtt" else "SubRip (.srt)"
    problems: list[Problem] = []
    cues: list[Cue] = []
    timed = 0
    blocks: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            blocks[-1].append((number, line.strip()))
        elif blocks[-1]:
            blocks.append([])
    for block in (b for b in blocks if b):
        first = block[0][1]
        if kind == "vtt" and (
            first.startswith("WEBVTT") or first.split()[0] in {"NOTE", "STYLE", "REGION"}
        ):
            continue
        arrow = next((i for i, (_, line) in enumerate(block) if "-->" in line), None)
        if arrow is None:
            problems.append(
                Problem(
                    str(path),
                    block[0][0],
                    "text outside any cue (no 'start --> end' line) is not coded",
                )
            )
            continue
        number, timing = block[arrow]
        match = CUE_TIMING.match(timing)
        if match and CUE_TIME.match(match.group("start")) and CUE_TIME.match(match.group("end")):
            timed += 1
        else:
            problems.append(
                Problem(
                    str(path),
                    number,
                    f"the cue timing '{timing[:40]}' cannot be read (write it as "
                    "'00:00:01.000 --> 00:00:04.000'); its text is kept",
                )
            )
        raw = " ".join(line for _, line in block[arrow + 1 :])
        voice_match = _VOICE.search(raw)
        voice = voice_match.group(1).strip() if voice_match else None
        cue_text = " ".join(html.unescape(_TAG.sub("", raw)).split())
        if cue_text:
            cues.append(Cue(voice, cue_text, number))
    if not timed:
        raise TranscriptError(
            f"not a valid {name} file: no cue has a readable 'start --> end' timing line "
            "(e.g. '00:00:01.000 --> 00:00:04.000')",
            path,
        )
    if not cues:
        raise TranscriptError(f"the {name} file has no captions", path)
    return cues, problems
