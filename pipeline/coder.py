"""Coder: the one way every caller asks for suggestions, whichever coder makes them.

Why: a run (flows/coding.py, chunk by chunk), ``qcode eval``, ``qcode code-segments`` and the
benchmarks all hand a coder the same thing, the units to code (their ids, vectors, words and
attributes), and get the same thing back, one row per suggested code plus the zero-shot score
matrix (for each unit's best code and the review order). The zero-shot coder
(``pipeline.assign.ZeroShotCoder``) and the learned coder (``pipeline.classify.LearnedCoding``)
implement it; ``pipeline.classify.make_coder`` picks one from the settings. Whatever comes
next implements ``suggest`` too, and no caller changes.

This module imports no other stage, so stages can depend on it without cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

SUGGESTION_COLUMNS = ["unit_id", "code_id", "score", "rank", "margin"]


@dataclass(frozen=True)
class Units:
    """What a coder reads about the units it codes, one entry per unit in reading order.

    ``vectors`` are final (a transcript unit's already blended with its neighbours);
    ``attributes`` (e.g. ``{"role": ..., "question": ...}``) scope codes with ``applies_to``,
    and None means no scoping; ``answers`` marks free-standing texts (survey answers,
    code-segments), which the zero-shot coder holds to ``answer_threshold``.
    """

    ids: list[str]
    vectors: np.ndarray
    texts: list[str] | None = None
    attributes: list[dict[str, str]] | None = None
    answers: bool = False

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Suggested:
    """A coder's answer: ``table`` has one row per (unit, suggested code) with
    ``SUGGESTION_COLUMNS`` (a learned coder adds ``probability``); ``scores`` is the
    (units, codes) zero-shot similarity matrix, codes out of a unit's scope at the lowest."""

    table: pd.DataFrame
    scores: np.ndarray


class Coder(Protocol):
    """Anything that suggests codes for units: zero-shot, learned, and whatever comes next."""

    code_ids: list[str]
    dimension: int  # the length of the unit vectors it reads

    def suggest(self, units: Units) -> Suggested: ...
