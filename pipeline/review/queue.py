"""Review queue: which units people still have to review, in which order, and how far they got.

Plain functions over the store's tables (units, suggestions, resolved decisions), so the web page,
a test or a notebook compute the same queue. ``reviewer`` limits statuses to one person's own
decisions (blind double coding); ``None`` means everybody's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.decisions import REVIEW_STATUSES, current_codings, unit_review_state

STRATEGIES = ("random", "uncertain", "reading", "code")
# Measured with the current coder (docs/quality.md, "Active learning"): most uncertain first
# learned faster than random from 50 to 225 decisions and tied at 250 (one fold, one seed).
DEFAULT_ORDER = "uncertain"
# The status filter: "unreviewed" means not reviewed yet, partly reviewed units included.
STATUSES = REVIEW_STATUSES
PAGE_SIZE = 50


def review_table(
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    resolved: pd.DataFrame,
    reviewer: str | None = None,
) -> pd.DataFrame:
    """One row per codable unit of the run, with what the queue sorts and filters on.

    Adds ``suggested_code`` and ``margin`` (the rank-1 suggestion, if any), ``reviewed``,
    ``status`` and ``decided_codes`` (from ``unit_review_state``, the one definition of
    reviewed), ``codes`` (codes suggested or decided on the unit) and ``reviewers`` (who decided
    on it).
    """
    table = units[units["codable"]].reset_index(drop=True)
    top = suggestions[suggestions["rank"] == 1].drop_duplicates("unit_id").set_index("unit_id")
    table["suggested_code"] = table["unit_id"].map(top["code_id"]).astype(object)
    table["margin"] = table["unit_id"].map(top["margin"]).astype(float)
    state = unit_review_state(units, suggestions, resolved, reviewer).set_index("unit_id")
    table["reviewed"] = table["unit_id"].map(state["reviewed"]).astype(bool)
    table["status"] = table["unit_id"].map(state["status"]).astype(object)
    table["decided_codes"] = table["unit_id"].map(state["decided_codes"])
    codings = current_codings(suggestions, resolved, reviewer)
    table["codes"] = _collect(table["unit_id"], codings["unit_id"], codings["code_id"])
    live = _live_decisions(resolved, reviewer)
    who = _collect(table["unit_id"], live["current_unit_id"], live["reviewer"])
    table["reviewers"] = [sorted(set(names)) for names in who]
    return table


def _collect(unit_ids: pd.Series, keys: pd.Series, values: pd.Series) -> list[list[str]]:
    """Per unit id, the values whose key is that unit (plain Python: a groupby per unit is slow)."""
    found: dict[str, list[str]] = {}
    for key, value in zip(keys, values, strict=True):
        found.setdefault(key, []).append(value)
    return [found.get(u, []) for u in unit_ids]


def _live_decisions(resolved: pd.DataFrame, reviewer: str | None) -> pd.DataFrame:
    """Decisions still anchored to a unit of the run (notes included)."""
    live = resolved[resolved["anchor"] != "orphaned"]
    return live if reviewer is None else live[live["reviewer"] == reviewer]


def order_queue(table: pd.DataFrame, strategy: str, code_order: list[str]) -> pd.DataFrame:
    """Units in review order.

    * ``random``: a fixed shuffle (by a hash of each unit id, so pages and links stay stable).
      With an earlier coder it taught the coder faster than most uncertain first; with the
      current one it is slower (docs/quality.md, "Active learning").
    * ``uncertain``: units with a suggestion first, smallest margin between their top two codes
      first; then units without one, highest ``top_score`` first (closest to being suggested).
    * ``reading``: by transcript, then position in it.
    * ``code``: grouped by the top suggested code in codebook order, in reading order inside a
      group; units without a suggestion last.
    """
    reading = ["transcript_id", "start"]
    if strategy == "random":
        keyed = table.assign(_shuffle=[_shuffle_key(u) for u in table["unit_id"]])
        ordered = keyed.sort_values(["_shuffle", *reading], kind="stable")
    elif strategy == "reading":
        ordered = table.sort_values(reading, kind="stable")
    elif strategy == "uncertain":
        keyed = table.assign(
            _no_suggestion=table["suggested_code"].isna(), _closeness=-table["top_score"]
        )
        ordered = keyed.sort_values(
            ["_no_suggestion", "margin", "_closeness", *reading], na_position="last", kind="stable"
        )
    elif strategy == "code":
        position = {code: i for i, code in enumerate(code_order)}
        keyed = table.assign(
            _group=[position.get(c, len(position)) for c in table["suggested_code"]]
        )
        ordered = keyed.sort_values(["_group", *reading], kind="stable")
    else:
        raise ValueError(f"unknown queue order '{strategy}' (use one of {STRATEGIES})")
    return ordered[table.columns].reset_index(drop=True)


def _shuffle_key(unit_id: str) -> str:
    return hashlib.sha256(unit_id.encode("utf-8")).hexdigest()


def filter_queue(
    table: pd.DataFrame,
    transcript: str = "",
    code: str = "",
    status: str = "",
    reviewer: str = "",
    keep: str = "",
) -> pd.DataFrame:
    """Rows matching every filter given (empty = any); ``keep`` stays whatever the filters say,
    so the unit on screen keeps its place for prev/next after it was reviewed."""
    mask = queue_mask(table, transcript, code, status, reviewer, keep)
    return table[mask].reset_index(drop=True)


def queue_mask(
    table: pd.DataFrame,
    transcript: str = "",
    code: str = "",
    status: str = "",
    reviewer: str = "",
    keep: str = "",
) -> np.ndarray:
    """``filter_queue``'s rows as a boolean array over ``table``'s rows."""
    mask = np.ones(len(table), dtype=bool)
    if transcript:
        mask &= (table["transcript_id"] == transcript).to_numpy(dtype=bool)
    if code:
        mask &= np.fromiter((code in codes for codes in table["codes"]), bool, len(table))
    if status == "unreviewed":
        mask &= ~table["reviewed"].to_numpy(dtype=bool)
    elif status:
        mask &= (table["status"] == status).to_numpy(dtype=bool)
    if reviewer:
        mask &= np.fromiter((reviewer in names for names in table["reviewers"]), bool, len(table))
    if keep:
        mask |= (table["unit_id"] == keep).to_numpy(dtype=bool)
    return mask


def neighbours(unit_ids: list[str], unit_id: str) -> tuple[str | None, str | None]:
    """The units before and after ``unit_id`` in a queue (None at either end or if absent)."""
    if unit_id not in unit_ids:
        return None, None
    i = unit_ids.index(unit_id)
    before = unit_ids[i - 1] if i > 0 else None
    after = unit_ids[i + 1] if i + 1 < len(unit_ids) else None
    return before, after


@dataclass(frozen=True)
class Progress:
    """Reviewed units of all codable units: overall and per transcript; per code, the units
    whose decision on that code is made."""

    reviewed: int
    total: int
    by_transcript: pd.DataFrame  # transcript_id, reviewed, total
    by_code: pd.DataFrame  # code_id, reviewed (decided on this code), total
    partly: int = 0  # units with some decisions and some suggested codes still undecided

    @property
    def share(self) -> float:
        return self.reviewed / self.total if self.total else 0.0


def progress(table: pd.DataFrame, code_order: list[str]) -> Progress:
    """Counts for the progress bars, all from the table's ``reviewed`` (``unit_review_state``).

    Per code, a unit counts once for each code suggested or decided on it, and as reviewed for
    that code when the code has a decision (accepting code 1 leaves code 2 unreviewed)."""
    done = table
    by_transcript = (
        done.groupby("transcript_id")["reviewed"]
        .agg(reviewed="sum", total="size")
        .reset_index()
        .astype({"reviewed": int, "total": int})
    )
    counts: dict[str, list[int]] = {}
    for codes, decided in zip(done["codes"], done["decided_codes"], strict=True):
        for code in codes:
            count = counts.setdefault(code, [0, 0])
            count[0] += int(code in decided)
            count[1] += 1
    rank = {code: i for i, code in enumerate(code_order)}
    ordered = sorted(counts, key=lambda c: (rank.get(c, len(rank)), c))
    by_code = pd.DataFrame(
        [(c, *counts[c]) for c in ordered], columns=["code_id", "reviewed", "total"]
    )
    partly = int((done["status"] == "partly reviewed").sum())
    return Progress(int(done["reviewed"].sum()), len(done), by_transcript, by_code, partly)


def page_of(frame: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> tuple[pd.DataFrame, int, int]:
    """One page of a queue: (rows, page actually shown, number of pages)."""
    pages = max(1, -(-len(frame) // size))
    page = min(max(1, page), pages)
    return frame.iloc[(page - 1) * size : page * size], page, pages
