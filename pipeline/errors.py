"""Errors a person can act on.

Every error the pipeline raises for bad input is a ``QcodeError``: its message names the file,
the line where known, what is wrong and how to fix it. The CLI prints the message and exits
without a traceback. Each class's ``code`` and ``fix`` (what a person does about it in general)
make the docs' error reference, generated from these classes (``docsite/reference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class QcodeError(Exception):
    """Base class: an input problem described in plain words."""

    code = "E000"
    fix = "Read the message: it names the file, the line where known, and what to change."

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.message)

    @property
    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}, line {self.line}" if self.line else self.path

    @property
    def message(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return f"[{self.code}] {where}{self.problem}"


class TranscriptError(QcodeError):
    """A transcript cannot be read or makes no sense as an interview."""

    code = "E100"
    fix = (
        "Open the file at the line named and fix what it says: save it as UTF-8 text (or .docx, "
        ".vtt, .srt), open each turn with a speaker label such as 'Interviewer:' or "
        "'Participant:', and close the front matter with a '---' line."
    )


class NothingToCodeError(QcodeError):
    """A run found nothing to code: every transcript was skipped, or no unit is codable."""

    code = "E150"
    fix = (
        "Each transcript's reason is listed: fix those files (speaker labels, participant "
        "speech, readable text), or check that the folder is the right one, and run again."
    )


class CodebookError(QcodeError):
    """The codebook is missing, malformed or breaks a rule."""

    code = "E200"
    fix = (
        "Fix the codebook at the line named (duplicate id or key, undeclared group, unknown "
        "kind, empty definition, rename pointing nowhere), then check it with 'qcode "
        "validate-codebook FILE'."
    )


class CodebookLimitError(CodebookError):
    """The codebook file is too large, too deep or has too many aliases to be a codebook."""

    code = "E201"
    fix = (
        "A codebook needs no YAML aliases, deep nesting or megabytes: write the values out "
        "plainly, or check that the file is really a codebook."
    )


class SegmentsFileError(QcodeError):
    """A CSV of pre-segmented text (survey answers, gold coding) is malformed."""

    code = "E300"
    fix = (
        "Give the CSV a header row with 'segment_id' and 'text' (a gold file also 'codes'), "
        "save it as UTF-8, one row per segment with a unique id."
    )


class SettingsError(QcodeError):
    """A setting has a value the pipeline cannot use."""

    code = "E400"
    fix = (
        "Use a setting name from the settings reference with a value in its range ('qcode run "
        "--help' lists them), e.g. --set top_k=2."
    )


class ModelError(QcodeError):
    """The embedding model cannot be found or loaded offline."""

    code = "E500"
    fix = (
        "Leave --model out to use the bundled model, or give the folder of a "
        "sentence-transformers model saved on this machine; if the bundled model is missing, "
        "reinstall qcode."
    )


@dataclass(frozen=True)
class Problem:
    """A non-fatal finding kept in the run report (skipped file, missing attribute)."""

    path: str
    line: int | None
    problem: str
    severity: str = "warning"  # "warning" (still coded) or "skipped" (not coded)

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return f"{where}: {self.problem}"

    @classmethod
    def from_error(cls, error: QcodeError) -> Problem:
        return cls(error.path or "", error.line, error.problem, "skipped")
