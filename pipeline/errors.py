"""Errors a person can act on.

Every error the pipeline raises for bad input is a ``QcodeError``: its message names the file,
the line where known, what is wrong and how to fix it. The CLI prints the message and exits
without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class QcodeError(Exception):
    """Base class: an input problem described in plain words."""

    code = "E000"

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


class NothingToCodeError(QcodeError):
    """A run found nothing to code: every transcript was skipped, or no unit is codable."""

    code = "E150"


class CodebookError(QcodeError):
    """The codebook is missing, malformed or breaks a rule."""

    code = "E200"


class CodebookLimitError(CodebookError):
    """The codebook file is too large, too deep or has too many aliases to be a codebook."""

    code = "E201"


class SegmentsFileError(QcodeError):
    """A CSV of pre-segmented text (survey answers, gold coding) is malformed."""

    code = "E300"


class SettingsError(QcodeError):
    """A setting has a value the pipeline cannot use."""

    code = "E400"


class ModelError(QcodeError):
    """The embedding model cannot be found or loaded offline."""

    code = "E500"


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
