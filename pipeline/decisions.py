"""Decisions: anchor reviewers' decisions to the current units and derive the current state.

Decisions are append-only events. Nothing here writes; these are plain functions over tables,
so every re-run, codebook edit or model change is reconciled the same way:

* a decision is anchored to its transcript, its character span and its exact text. If the unit
  still exists it stays put ("kept"); if the text moved (an edit earlier in the transcript) or
  the unit setting changed, it follows the text to the unit that now holds it ("moved");
  if the text or the transcript is gone, or the code was removed from the codebook, it is
  reported as "orphaned" and never silently dropped;
* it never guesses: where the text now appears twice, the decision follows the passage whose
  neighbours moved with it; if nothing tells, or the text was edited (a typo fix), it waits,
  orphaned, as "moved — confirm" with a candidate unit until a person confirms the move;
* a code renamed or merged in the codebook (``renamed:``) carries its decisions to the new id.

The current state of a unit's codes is its latest decision per code where any exist, else the
latest run's suggestions. Whether a unit is *reviewed* is decided in one place,
``unit_review_state``: the review page's queue and progress, the run manifest and the reports
all call it, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook
from pipeline.errors import QcodeError

ACCEPTING = ("accept", "add")
REJECTING = ("reject", "remove")
CODING_ACTIONS = (*ACCEPTING, *REJECTING)
# "done": the reviewer marked the whole unit reviewed (any suggestion still undecided is rejected
# with it). On a unit with no suggestion it is how "reviewed, no code" is recorded.
DONE = "done"
ACTIONS = (*CODING_ACTIONS, "note", DONE)
REVIEW_STATUSES = ("unreviewed", "partly reviewed", "accepted", "rejected", "changed", "no code")
CODING_COLUMNS = [
    "unit_id",
    "code_id",
    "status",
    "score",
    "rank",
    "margin",
    "reviewer",
    "decided_at",
    "memo",
]


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_code(code_id: str, codebook: Codebook) -> str | None:
    """Follow renames (old -> new, possibly chained); None if the code no longer exists."""
    seen = set()
    while code_id in codebook.renamed and code_id not in seen:
        seen.add(code_id)
        code_id = codebook.renamed[code_id]
    return code_id if code_id in codebook.ids else None


FUZZY_AT_LEAST = 0.85  # similarity (difflib ratio) of an edited text to its old text
CONFIRM = "moved — confirm"  # the start of a decision's reason while its move awaits a person
CONFIRM_SOURCE = "confirm"  # source of the note a person writes to confirm a move
COMPARE_SOURCE = "compare"  # source of decisions imported for comparison (a separate coder)
_CONFIRMED = re.compile(r"\bdecision (\d+)\b")


def _occurrences(text: str, new_text: str) -> list[int]:
    found, position = [], new_text.find(text)
    while position != -1 and text:
        found.append(position)
        position = new_text.find(text, position + 1)
    return found


@dataclass(frozen=True)
class _Spans:
    """One interview's units as plain arrays, in the order given. Anchors are looked up in them
    once per moved decision: filtering a DataFrame took 10-15 ms a lookup, over a second of an
    edit run whose edits had moved 40 decisions."""

    ids: list[str]
    starts: np.ndarray
    ends: np.ndarray
    texts: list[str]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Spans:
        return cls(
            [str(u) for u in frame["unit_id"].tolist()],
            frame["start"].to_numpy(dtype=np.int64),
            frame["end"].to_numpy(dtype=np.int64),
            [str(t) for t in frame["text"].tolist()],
        )


def _holder(spans: _Spans | None, start: int, end: int) -> str | None:
    """The current unit holding the span: the same span, else one covering it, else overlapping
    (the first in order of start, among several)."""
    if spans is None:
        return None
    starts, ends = spans.starts, spans.ends
    for mask in (
        (starts == start) & (ends == end),
        (starts <= start) & (ends >= end),
        (starts < end) & (ends > start),
    ):
        found = np.flatnonzero(mask)
        if found.size:
            return spans.ids[found[0]]
    return None


def _neighbour_shifts(
    earlier: _Earlier | None, unit_id: str, start: int, new_text: str
) -> set[int]:
    """How far the unit's old neighbours (the units beside it in the run it came from) moved:
    the shift its own text should show if it moved with its context."""
    if earlier is None or unit_id not in earlier.run_of:
        return set()
    same = earlier.spans(earlier.run_of[unit_id])
    shifts: set[int] = set()
    for side in (np.flatnonzero(same.starts < start), np.flatnonzero(same.starts > start)):
        nearest = side[np.argsort(np.abs(same.starts[side] - start), kind="stable")[:3]]
        for i in nearest:
            places = _occurrences(same.texts[i], new_text)
            if len(places) == 1:
                shifts.add(places[0] - int(same.starts[i]))
                break
    return shifts


class _Earlier:
    """Units of earlier runs, indexed once: which version of which interview a unit came
    from, and every unit of that version."""

    def __init__(self, units: pd.DataFrame):
        self.run_of = {
            u: (r, t)
            for u, r, t in zip(
                units["unit_id"].tolist(),
                units["version"].tolist(),
                units["transcript_id"].tolist(),
                strict=True,
            )
        }
        self.layout = {key: frame for key, frame in units.groupby(["version", "transcript_id"])}
        self._spans: dict[tuple, _Spans] = {}

    def spans(self, key: tuple) -> _Spans:
        if key not in self._spans:
            self._spans[key] = _Spans.of(self.layout[key])
        return self._spans[key]


def _fuzzy(text: str, spans: _Spans | None) -> tuple[str, str] | None:
    """The current unit whose text is most like ``text`` (a typo fix), if like enough."""
    if spans is None:
        return None
    best: tuple[float, str, str] | None = None
    for unit_id, candidate in zip(spans.ids, spans.texts, strict=True):
        matcher = SequenceMatcher(None, text, candidate, autojunk=False)
        if matcher.real_quick_ratio() < FUZZY_AT_LEAST or matcher.quick_ratio() < FUZZY_AT_LEAST:
            continue
        ratio = matcher.ratio()
        if ratio >= FUZZY_AT_LEAST and (best is None or ratio > best[0]):
            best = (ratio, unit_id, candidate)
    return None if best is None else best[1:]


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve_anchors(
    decisions: pd.DataFrame,
    units: pd.DataFrame,
    texts: dict[str, str],
    codebook: Codebook,
    earlier_units: pd.DataFrame | None = None,
    cache: dict | None = None,
    current_ids: set[str] | frozenset[str] | None = None,
) -> pd.DataFrame:
    """Each decision with ``current_unit_id``, ``current_code_id``, ``anchor``, ``reason`` and
    ``candidate_unit_id``.

    ``units`` are the current units (latest run); ``texts`` the current transcript texts;
    ``earlier_units`` the store's units of earlier runs (with ``version``), which say where
    a decision's neighbours were, so a text that now appears twice follows its context.
    ``cache``: where a caller that resolves again and again against the same units (the review
    page, per run) keeps each anchor found, so only new decisions cost anything; such a caller
    also passes ``current_ids``, the ids of ``units``, computed once.

    Never a guess: a decision whose text now appears more than once with no context to tell
    which is its passage, or whose text was edited (a typo fix), stays ``orphaned`` with a
    reason starting "moved — confirm" and the ``candidate_unit_id`` a person can confirm
    (``confirm_move``); once confirmed it is ``moved`` there.
    """
    out = decisions.copy()
    if out.empty:
        for column in ("current_unit_id", "current_code_id", "anchor", "reason"):
            out[column] = pd.Series(dtype=object)
        out["candidate_unit_id"] = pd.Series(dtype=object)
        return out
    if current_ids is None:
        current_ids = set(units["unit_id"])
    by_transcript: dict[str, _Spans | None] = {}
    spans = units[["unit_id", "start", "end", "text"]]
    rows_of: dict[str, np.ndarray] = {}

    def units_of(tid: str) -> _Spans | None:
        # Only for decisions whose unit is gone (most are kept), and only the transcripts
        # they are in, found by one comparison each (grouping every transcript's units cost
        # an edit run a second at 7,000 pages, the review page ~tens of ms per request);
        # beyond a few transcripts, grouping once is cheaper.
        if tid not in by_transcript:
            if len(by_transcript) == 16:
                rows_of.update(units.groupby("transcript_id").indices)
            if rows_of:
                rows = rows_of.get(tid, np.zeros(0, dtype=np.int64))
            else:
                same = units["transcript_id"] == tid
                rows = np.flatnonzero(same.to_numpy(dtype=bool, na_value=False))
            by_transcript[tid] = (
                _Spans.of(spans.iloc[rows].sort_values("start")) if len(rows) else None
            )
        return by_transcript[tid]

    confirmed = _confirmations(out)
    earlier: _Earlier | None = None  # indexed on first need: most calls find every unit current
    located: dict[tuple, tuple[str | None, str, str, str]] = {} if cache is None else cache
    keys = list(
        zip(
            *(out[c].tolist() for c in ("unit_id", "transcript_id", "start", "end", "text")),
            strict=True,
        )
    )
    for key in set(keys):
        if key in located:
            continue
        unit_id, tid, start, _end, text = key
        if unit_id in current_ids:
            located[key] = (unit_id, "kept", "", "")
            continue
        if tid not in texts:
            located[key] = (None, "orphaned", "its interview is no longer in the project", "")
            continue
        new_text, frame = texts[tid], units_of(tid)
        if earlier is None and earlier_units is not None and not earlier_units.empty:
            earlier = _Earlier(earlier_units)
        places = _occurrences(text, new_text)
        shifts = _neighbour_shifts(earlier, unit_id, int(start), new_text)
        if not places:
            similar = _fuzzy(text, frame)
            if similar is None:
                located[key] = (None, "orphaned", "its text is no longer in the transcript", "")
            else:
                located[key] = (
                    None,
                    "orphaned",
                    f'{CONFIRM}: its text was edited; now "{_short(similar[1])}"',
                    similar[0],
                )
            continue
        matching = [p for p in places if p - int(start) in shifts]
        if len(matching) == 1:
            chosen, sure = matching[0], True
        else:
            chosen = min(places, key=lambda p: abs(p - int(start)))
            # One place and nothing says otherwise: the text moved with the edit around it.
            sure = len(places) == 1 and not shifts
        holder = _holder(frame, chosen, chosen + len(text))
        if holder is None:
            located[key] = (None, "orphaned", "its text is no longer part of a coding unit", "")
        elif sure:
            located[key] = (holder, "moved", "", "")
        else:
            why = (
                f"its text now appears {len(places)} times and its neighbours do not say which"
                if len(places) > 1
                else "its text is still there but its neighbours are not around it"
            )
            located[key] = (
                None,
                "orphaned",
                f'{CONFIRM}: {why}; nearest: "{_short(frame.texts[frame.ids.index(holder)])}"',
                holder,
            )
    anchors = [located[k] for k in keys]
    out["current_unit_id"] = [a[0] for a in anchors]
    out["anchor"] = [a[1] for a in anchors]
    out["reason"] = [a[2] for a in anchors]
    out["candidate_unit_id"] = [a[3] for a in anchors]
    if confirmed:
        for i, row in out.iterrows():
            target = confirmed.get(int(row["decision_id"]))
            if row["anchor"] == "orphaned" and target and target == row["candidate_unit_id"]:
                out.at[i, "current_unit_id"] = target
                out.at[i, "anchor"] = "moved"
                out.at[i, "reason"] = "move confirmed by a person"
    codes = [resolve_code(c, codebook) if c else "" for c in out["code_id"]]
    out["current_code_id"] = codes
    gone = [c is None for c in codes]
    if any(gone):
        out.loc[gone, "reason"] = [
            f"code '{c}' is no longer in the codebook (declare it under 'renamed:' to keep it)"
            for c in out.loc[gone, "code_id"]
        ]
        out.loc[gone, "anchor"] = "orphaned"
    return out


def _confirmations(decisions: pd.DataFrame) -> dict[int, str]:
    """decision id -> unit a person confirmed it moved to (notes with source 'confirm')."""
    if "source" not in decisions.columns:
        return {}
    columns = (decisions[c] for c in ("source", "action", "unit_id", "memo"))
    out: dict[int, str] = {}
    for source, action, unit_id, memo in zip(*columns, strict=True):
        if source == CONFIRM_SOURCE and action == "note":
            for match in _CONFIRMED.finditer(str(memo)):
                out[int(match.group(1))] = str(unit_id)
    return out


class MoveError(QcodeError):
    """A move cannot be confirmed: the decision is not waiting for one."""

    code = "E602"
    fix = (
        "Run 'qcode orphans' to see which decisions wait for a confirmation and use the number "
        "it shows; a decision already applied or orphaned for good cannot be moved."
    )


def awaiting_confirmation(resolved: pd.DataFrame) -> pd.DataFrame:
    """Decisions shown as "moved — confirm": not applied until a person confirms the move."""
    if resolved.empty:
        return resolved
    return resolved[(resolved["anchor"] == "orphaned") & resolved["reason"].str.startswith(CONFIRM)]


def confirmation(resolved: pd.DataFrame, decision_id: int) -> tuple[str, str]:
    """(unit, memo) of the note (source 'confirm') that confirms decision ``decision_id``'s
    move to its candidate unit; a ``MoveError`` if it is not waiting for a confirmation."""
    waiting = awaiting_confirmation(resolved)
    row = waiting[waiting["decision_id"] == decision_id]
    if row.empty:
        raise MoveError(
            f"decision {decision_id} is not waiting for a move to be confirmed "
            "(see 'qcode orphans' for those that are)"
        )
    unit_id = str(row.iloc[0]["candidate_unit_id"])
    return unit_id, f"Confirmed: decision {decision_id} moved here after its interview was edited."


def project_decisions(resolved: pd.DataFrame) -> pd.DataFrame:
    """Decisions that make the project's coding: all but those imported for comparison only
    (``qcode import-qdpx`` without ``--adopt``), which count for agreement alone."""
    if resolved.empty or "source" not in resolved.columns:
        return resolved
    return resolved[resolved["source"] != COMPARE_SOURCE]


def latest_decisions(resolved: pd.DataFrame, reviewer: str | None = None) -> pd.DataFrame:
    """The latest accept/reject per (unit, code) among anchored decisions: one reviewer's, or
    (``reviewer`` None) the project's, without comparison imports."""
    live = resolved[(resolved["anchor"] != "orphaned") & resolved["action"].isin(CODING_ACTIONS)]
    live = live[live["reviewer"] == reviewer] if reviewer is not None else project_decisions(live)
    live = live.sort_values("decision_id")
    return live.drop_duplicates(["current_unit_id", "current_code_id"], keep="last")


def current_codings(
    suggestions: pd.DataFrame,
    resolved: pd.DataFrame,
    reviewer: str | None = None,
    by_unit_id: bool = True,
) -> pd.DataFrame:
    """Per (unit, code): accepted / rejected by a person, or suggested (unreviewed); sorted by
    unit and code id unless ``by_unit_id`` is false (a run puts them in reading order,
    ``in_reading_order``, and need not sort twice)."""
    latest = latest_decisions(resolved, reviewer)
    decided = pd.DataFrame(
        {
            "unit_id": latest["current_unit_id"],
            "code_id": latest["current_code_id"],
            "status": ["accepted" if a in ACCEPTING else "rejected" for a in latest["action"]],
            "reviewer": latest["reviewer"],
            "decided_at": latest["at"],
            "memo": latest["memo"],
        }
    )
    machine = suggestions[["unit_id", "code_id", "score", "rank", "margin"]]
    # Only suggestions on decided units need the join; the rest (nearly all of a large
    # project's) are "suggested" as they stand: joining every row was a second of every run
    # at 7,000 pages.
    if machine.empty:
        merged = _filled(machine.merge(decided, on=["unit_id", "code_id"], how="outer"))
        return merged[CODING_COLUMNS].sort_values(["unit_id", "code_id"]).reset_index(drop=True)
    if decided.empty:
        return _codings_of(machine, machine.iloc[:0], by_unit_id)
    on_decided = machine["unit_id"].isin(set(decided["unit_id"])).to_numpy()
    merged = machine[on_decided].merge(decided, on=["unit_id", "code_id"], how="outer")
    # The keys' types as joining every row would make them (two kinds of text join as
    # object), read off a join of one suggestion.
    probe = machine.iloc[:1].merge(decided, on=["unit_id", "code_id"], how="outer")
    keys = {k: probe[k].dtype for k in ("unit_id", "code_id")}
    return _codings_of(machine[~on_decided].astype(keys), _filled(merged).astype(keys), by_unit_id)


def in_reading_order(
    codings: pd.DataFrame, units: pd.DataFrame, unit_index: pd.Index | None = None
) -> pd.DataFrame:
    """The run folder's codings: each row with its unit's transcript, in the order the units
    are read (the run's transcripts in turn, each transcript's units by position), a unit's
    codes by the machine's rank and codes people added after them (by code id).

    Why: a codings sheet then reads like the transcripts, and each transcript's rows are one
    block, so after an edit only the edited transcript's rows are formatted again
    (``incremental.CsvParts``; the order by unit id scattered every transcript).
    ``unit_index``: ``pd.Index(units["unit_id"])``, when the caller has it already."""
    if codings.empty or units.empty:
        table = codings.reset_index(drop=True)
        table.insert(1, "transcript_id", pd.Series([None] * len(table), dtype=object))
        return table
    if unit_index is None:
        unit_index = pd.Index(units["unit_id"])
    position = unit_index.get_indexer(codings["unit_id"])
    found = position >= 0
    rank = pd.to_numeric(codings["rank"], errors="coerce").to_numpy(dtype=float, na_value=np.inf)
    code = pd.factorize(codings["code_id"], sort=True)[0]
    # Codes people added have no rank: by code id. A unit missing from ``units`` goes last.
    order = np.lexsort((code, rank, np.where(found, position, len(units))))
    table = codings.iloc[order].reset_index(drop=True)
    transcripts = units["transcript_id"].iloc[np.where(found, position, 0)[order]]
    transcripts = transcripts.reset_index(drop=True).where(found[order])
    table.insert(1, "transcript_id", transcripts)
    return table


def decided_rows(codings: pd.DataFrame) -> np.ndarray:
    """Which codings rows a person decided (the rest are the machine's suggestions as a run
    made them): what a transcript's codings depend on besides its text and settings."""
    return (codings["status"] != "suggested").to_numpy(dtype=bool)


def _filled(merged: pd.DataFrame) -> pd.DataFrame:
    """Joined codings with the blanks of suggestions nobody decided on filled in."""
    merged["status"] = merged["status"].astype(object).fillna("suggested")
    for column in ("reviewer", "decided_at", "memo"):
        merged[column] = merged[column].astype(object).fillna("")
    return merged


def _codings_of(undecided: pd.DataFrame, merged: pd.DataFrame, by_unit_id: bool) -> pd.DataFrame:
    """``current_codings``' table: suggestions nobody decided on, beside the joined rest."""
    if len(undecided):
        rest = undecided.assign(status="suggested", reviewer="", decided_at="", memo="")
        rest = rest.astype(dict.fromkeys(["status", "reviewer", "decided_at", "memo"], object))
        merged = pd.concat([merged, rest], ignore_index=True) if len(merged) else rest
    if not by_unit_id:
        return merged[CODING_COLUMNS].reset_index(drop=True)
    return merged[CODING_COLUMNS].sort_values(["unit_id", "code_id"]).reset_index(drop=True)


def unit_statuses(resolved: pd.DataFrame, reviewer: str | None = None) -> pd.Series:
    """unit_id -> accepted / rejected / changed, for units with any decision on a code.

    This says who touched a unit, not whether it is reviewed: use ``unit_review_state``."""
    latest = latest_decisions(resolved, reviewer)
    statuses = {}
    for unit_id, group in latest.groupby("current_unit_id"):
        actions = set(group["action"])
        if actions & {"add", "remove"} or actions >= {"accept", "reject"}:
            statuses[unit_id] = "changed"
        elif actions == {"accept"}:
            statuses[unit_id] = "accepted"
        else:
            statuses[unit_id] = "rejected"
    return pd.Series(statuses, dtype=object)


REVIEW_STATE_COLUMNS = ["unit_id", "suggested", "undecided", "decided_codes", "reviewed", "status"]


def unit_review_state(
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    resolved: pd.DataFrame,
    reviewer: str | None = None,
) -> pd.DataFrame:
    """Per codable unit of the run: is it reviewed? The one definition of "reviewed".

    A unit is reviewed when somebody (only ``reviewer``, if given: blind coding, agreement) has
    decided on it (a decision on a code, or a "done" mark) and every code the run suggests on it
    has an accept or reject decision. Accepting one of three suggested codes leaves the unit
    "partly reviewed"; a new suggestion on a reviewed unit (a code added to the codebook, a new
    model) has no decision yet, so the unit is back in the queue. A unit with no suggestion is
    reviewed once somebody adds a code or marks it done ("reviewed, no code").

    Columns: ``unit_id``; ``suggested`` and ``undecided`` (how many suggested codes, and how
    many of them nobody decided); ``decided_codes`` (the codes with a decision, a list);
    ``reviewed`` (bool); ``status``: ``unreviewed`` (nobody decided anything), ``partly
    reviewed``, or for reviewed units ``accepted`` / ``rejected`` / ``changed`` (codes added or
    removed, or some accepted and some rejected) / ``no code`` (marked done, nothing suggested).
    """
    codable = units.loc[units["codable"].astype(bool), "unit_id"]
    pairs = suggestions[["unit_id", "code_id"]].drop_duplicates()
    decided: dict[str, dict[str, str]] = {}  # unit -> code -> latest action
    touched: set[str] = set()
    if len(resolved):
        live = resolved[resolved["anchor"] != "orphaned"]
        if reviewer is not None:
            live = live[live["reviewer"] == reviewer]
        live = live.sort_values("decision_id")
        _tally(
            zip(
                *(live[c].tolist() for c in ("current_unit_id", "current_code_id", "action")),
                strict=True,
            ),
            decided,
            touched,
        )
    # Most units nobody decided on: their columns are made whole (a row at a time was 1-2 s
    # of every run at 7,000 pages); only touched units go through the set logic.
    ids = codable.tolist()
    counts = pairs["unit_id"].value_counts().reindex(codable, fill_value=0).to_numpy()
    suggested_n, undecided = counts.copy(), counts.copy()
    decided_codes: list[list[str]] = [[] for _ in ids]
    reviewed = np.zeros(len(ids), dtype=bool)
    status = np.full(len(ids), "unreviewed", dtype=object)
    where = np.flatnonzero(codable.isin(touched).to_numpy())
    if len(where):
        mine = pairs[pairs["unit_id"].isin(touched)]
        suggested: dict[str, set[str]] = {}
        for unit_id, code_id in zip(
            mine["unit_id"].tolist(), mine["code_id"].tolist(), strict=True
        ):
            suggested.setdefault(unit_id, set()).add(code_id)
        for i in where:
            row = review_state_row(ids[i], suggested.get(ids[i], set()), decided, touched)
            suggested_n[i], undecided[i], decided_codes[i], reviewed[i], status[i] = row[1:]
    return pd.DataFrame(
        {
            "unit_id": pd.Series(ids, dtype=object),
            "suggested": suggested_n,
            "undecided": undecided,
            "decided_codes": decided_codes,
            "reviewed": reviewed,
            "status": status,
        },
        columns=REVIEW_STATE_COLUMNS,
    )


def _tally(
    rows: Iterable[tuple[str, str, str]], decided: dict[str, dict[str, str]], touched: set[str]
) -> None:
    """Fold live decisions (unit, code, action), oldest first, into each unit's latest action
    per code (``decided``) and the units somebody decided on (``touched``)."""
    for unit_id, code_id, action in rows:
        if action in CODING_ACTIONS:
            decided.setdefault(unit_id, {})[code_id] = action
            touched.add(unit_id)
        elif action == DONE:
            touched.add(unit_id)


def review_state_row(
    unit_id: str, codes: set[str], decided: dict[str, dict[str, str]], touched: set[str]
) -> tuple[str, int, int, list[str], bool, str]:
    """One unit's row of ``unit_review_state`` (its columns) from its suggested ``codes`` and
    the tallied decisions: the one definition of reviewed, shared by the per-unit fast path."""
    latest = decided.get(unit_id, {})
    undecided = len(codes - latest.keys())
    reviewed = unit_id in touched and undecided == 0
    if not reviewed:
        status = "partly reviewed" if unit_id in touched else "unreviewed"
    else:
        actions = set(latest.values())
        if not actions:
            status = "no code"
        elif actions & {"add", "remove"} or actions >= {"accept", "reject"}:
            status = "changed"
        elif actions == {"accept"}:
            status = "accepted"
        else:
            status = "rejected"
    return (unit_id, len(codes), undecided, sorted(latest), reviewed, status)


def unit_state(
    unit_id: str,
    suggested: Iterable[str],
    decisions: Iterable[Mapping],
    reviewer: str | None = None,
) -> dict:
    """``unit_review_state``'s row for one codable unit, without building its tables: the
    review page asks this on every request. ``decisions``: the resolved decisions anchored to
    the unit, as records (any order)."""
    decided: dict[str, dict[str, str]] = {}
    touched: set[str] = set()
    live = _live(decisions, reviewer)
    _tally(((unit_id, d["current_code_id"], d["action"]) for d in live), decided, touched)
    row = review_state_row(unit_id, set(suggested), decided, touched)
    return dict(zip(REVIEW_STATE_COLUMNS, row, strict=True))


def _live(decisions: Iterable[Mapping], reviewer: str | None, project: bool = False) -> list:
    """The anchored decisions, oldest first: one ``reviewer``'s, or everybody's (``project``:
    without comparison imports, as ``latest_decisions``)."""
    rows = [
        d
        for d in decisions
        if d["anchor"] != "orphaned"
        and (reviewer is None or d["reviewer"] == reviewer)
        and not (reviewer is None and project and d.get("source") == COMPARE_SOURCE)
    ]
    return sorted(rows, key=lambda d: int(d["decision_id"]))


def unit_codings(
    unit_id: str,
    suggestions: Iterable[Mapping],
    decisions: Iterable[Mapping],
    reviewer: str | None = None,
) -> list[dict]:
    """``current_codings``'s rows for one unit, as records sorted by code id, without building
    its tables (the review page asks this on every request). ``suggestions``: the unit's
    suggestions (``code_id``, ``score``, ``rank``, ``margin``); ``decisions``: the resolved
    decisions anchored to the unit."""
    latest: dict[str, Mapping] = {}
    for d in _live(decisions, reviewer, project=True):
        if d["action"] in CODING_ACTIONS:
            latest[d["current_code_id"]] = d
    machine = {s["code_id"]: s for s in suggestions}
    out = []
    for code in sorted(machine.keys() | latest.keys()):
        suggested = machine.get(code, {})
        decided = latest.get(code)
        if decided is None:
            status = "suggested"
        else:
            status = "accepted" if decided["action"] in ACCEPTING else "rejected"
        out.append(
            {
                "unit_id": unit_id,
                "code_id": code,
                "status": status,
                "score": suggested.get("score"),
                "rank": suggested.get("rank"),
                "margin": suggested.get("margin"),
                "reviewer": _blank(decided and decided["reviewer"]),
                "decided_at": _blank(decided and decided["at"]),
                "memo": _blank(decided and decided["memo"]),
            }
        )
    return out


def _blank(value: object) -> object:
    """ "" for a missing value, as ``current_codings`` fills it."""
    return "" if value is None or (isinstance(value, float) and value != value) else value


def reviewed_units(
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    resolved: pd.DataFrame,
    reviewer: str | None = None,
) -> set[str]:
    """Ids of the reviewed codable units (``unit_review_state``): report denominators use it."""
    state = unit_review_state(units, suggestions, resolved, reviewer)
    return set(state.loc[state["reviewed"], "unit_id"])


def review_counts(
    units: pd.DataFrame,
    codings: pd.DataFrame,
    resolved: pd.DataFrame,
    state: pd.DataFrame | None = None,
) -> dict:
    """How much of a run people have reviewed (recorded in the manifest and summaries).

    ``codings`` are ``current_codings``: its rows with a rank are the run's suggestions.
    Decisions imported for comparison only are not the project's and are left out.
    ``state``: the project's ``unit_review_state`` of the run, when the caller has it."""
    resolved = project_decisions(resolved)
    if state is None:
        suggested = codings[codings["rank"].notna()] if len(codings) else codings
        state = unit_review_state(units, suggested, resolved)
    codable = len(state)
    reviewed = int(state["reviewed"].sum())
    statuses = codings["status"].value_counts()  # one pass over a large project's codings
    return {
        "decisions": len(resolved),
        "reviewers": sorted(set(resolved["reviewer"])) if len(resolved) else [],
        "units_reviewed": reviewed,
        "units_partly_reviewed": int((state["status"] == "partly reviewed").sum()),
        "codable_units": codable,
        "share_reviewed": round(reviewed / codable, 4) if codable else 0.0,
        "accepted_codings": int(statuses.get("accepted", 0)),
        "rejected_codings": int(statuses.get("rejected", 0)),
        "unreviewed_suggestions": int(statuses.get("suggested", 0)),
        "orphaned_decisions": int((resolved["anchor"] == "orphaned").sum()) if len(resolved) else 0,
        "decisions_to_confirm": len(awaiting_confirmation(resolved)),
    }
