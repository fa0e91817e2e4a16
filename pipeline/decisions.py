"""Decisions: anchor reviewers' decisions to the current units and derive the current state.

Decisions are append-only events. Nothing here writes; these are plain functions over tables,
so every re-run, codebook edit or model change is reconciled the same way:

* a decision is anchored to its transcript, its character span and its exact text. If the unit
  still exists it stays put ("kept"); if the text moved (an edit earlier in the transcript) or
  the unit setting changed, it follows the text to the unit that now holds it ("moved");
  if the text or the transcript is gone, or the code was removed from the codebook, it is
  reported as "orphaned" and never silently dropped;
* a code renamed or merged in the codebook (``renamed:``) carries its decisions to the new id.

The current state of a unit's codes is its latest decision per code where any exist, else the
latest run's suggestions. Whether a unit is *reviewed* is decided in one place,
``unit_review_state``: the review page's queue and progress, the run manifest and the reports
all call it, so they cannot disagree.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from pipeline.codebook import Codebook

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


def _locate(text: str, old_start: int, new_text: str) -> int | None:
    """Start of the occurrence of ``text`` in ``new_text`` nearest to where it used to be."""
    best, position = None, new_text.find(text)
    while position != -1:
        if best is None or abs(position - old_start) < abs(best - old_start):
            best = position
        position = new_text.find(text, position + 1)
    return best


def resolve_anchors(
    decisions: pd.DataFrame, units: pd.DataFrame, texts: dict[str, str], codebook: Codebook
) -> pd.DataFrame:
    """Each decision with ``current_unit_id``, ``current_code_id``, ``anchor`` and ``reason``.

    ``units`` are the current units (latest run); ``texts`` the current transcript texts.
    """
    out = decisions.copy()
    if out.empty:
        for column in ("current_unit_id", "current_code_id", "anchor", "reason"):
            out[column] = pd.Series(dtype=object)
        return out
    current_ids = set(units["unit_id"])
    by_transcript: dict[str, pd.DataFrame] = {}

    def units_of(tid: str) -> pd.DataFrame | None:
        # Only for decisions whose unit is gone (most are kept): splitting all units by
        # transcript on every call cost the review page a fixed ~tens of ms per request.
        if not by_transcript:
            by_transcript.update(
                {t: f.sort_values("start") for t, f in units.groupby("transcript_id")}
            )
        return by_transcript.get(tid)

    located: dict[tuple, tuple[str | None, str, str]] = {}
    for key in set(
        zip(
            out["unit_id"], out["transcript_id"], out["start"], out["end"], out["text"], strict=True
        )
    ):
        unit_id, tid, start, _end, text = key
        if unit_id in current_ids:
            located[key] = (unit_id, "kept", "")
            continue
        if tid not in texts:
            located[key] = (None, "orphaned", "its interview is no longer in the project")
            continue
        new_start = _locate(text, int(start), texts[tid])
        if new_start is None:
            located[key] = (None, "orphaned", "its text is no longer in the transcript")
            continue
        new_end = new_start + len(text)
        frame = units_of(tid)
        holder = None
        if frame is not None:
            exact = frame[(frame["start"] == new_start) & (frame["end"] == new_end)]
            covering = frame[(frame["start"] <= new_start) & (frame["end"] >= new_end)]
            overlapping = frame[(frame["start"] < new_end) & (frame["end"] > new_start)]
            for candidates in (exact, covering, overlapping):
                if len(candidates):
                    holder = candidates.iloc[0]["unit_id"]
                    break
        if holder is None:
            located[key] = (None, "orphaned", "its text is no longer part of a coding unit")
        else:
            located[key] = (holder, "moved", "")
    anchors = [
        located[k]
        for k in zip(
            out["unit_id"], out["transcript_id"], out["start"], out["end"], out["text"], strict=True
        )
    ]
    out["current_unit_id"] = [a[0] for a in anchors]
    out["anchor"] = [a[1] for a in anchors]
    out["reason"] = [a[2] for a in anchors]
    codes = [resolve_code(c, codebook) if c else "" for c in out["code_id"]]
    out["current_code_id"] = codes
    gone = [c is None for c in codes]
    out.loc[gone, "reason"] = [
        f"code '{c}' is no longer in the codebook (declare it under 'renamed:' to keep it)"
        for c in out.loc[gone, "code_id"]
    ]
    out.loc[gone, "anchor"] = "orphaned"
    return out


def latest_decisions(resolved: pd.DataFrame, reviewer: str | None = None) -> pd.DataFrame:
    """The latest accept/reject per (unit, code) among anchored decisions."""
    live = resolved[(resolved["anchor"] != "orphaned") & resolved["action"].isin(CODING_ACTIONS)]
    if reviewer is not None:
        live = live[live["reviewer"] == reviewer]
    live = live.sort_values("decision_id")
    return live.drop_duplicates(["current_unit_id", "current_code_id"], keep="last")


def current_codings(
    suggestions: pd.DataFrame, resolved: pd.DataFrame, reviewer: str | None = None
) -> pd.DataFrame:
    """Per (unit, code): accepted / rejected by a person, or suggested (unreviewed)."""
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
    merged = machine.merge(decided, on=["unit_id", "code_id"], how="outer")
    merged["status"] = merged["status"].astype(object).fillna("suggested")
    for column in ("reviewer", "decided_at", "memo"):
        merged[column] = merged[column].astype(object).fillna("")
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
    codable = units.loc[units["codable"].astype(bool), "unit_id"].tolist()
    suggested: dict[str, set[str]] = {}
    for unit_id, code_id in zip(suggestions["unit_id"], suggestions["code_id"], strict=True):
        suggested.setdefault(unit_id, set()).add(code_id)
    decided: dict[str, dict[str, str]] = {}  # unit -> code -> latest action
    touched: set[str] = set()
    if len(resolved):
        live = resolved[resolved["anchor"] != "orphaned"]
        if reviewer is not None:
            live = live[live["reviewer"] == reviewer]
        live = live.sort_values("decision_id")
        for unit_id, code_id, action in zip(
            live["current_unit_id"], live["current_code_id"], live["action"], strict=True
        ):
            if action in CODING_ACTIONS:
                decided.setdefault(unit_id, {})[code_id] = action
                touched.add(unit_id)
            elif action == DONE:
                touched.add(unit_id)
    rows = []
    for unit_id in codable:
        codes = suggested.get(unit_id, set())
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
        rows.append((unit_id, len(codes), undecided, sorted(latest), reviewed, status))
    return pd.DataFrame(rows, columns=REVIEW_STATE_COLUMNS)


def reviewed_units(
    units: pd.DataFrame,
    suggestions: pd.DataFrame,
    resolved: pd.DataFrame,
    reviewer: str | None = None,
) -> set[str]:
    """Ids of the reviewed codable units (``unit_review_state``): report denominators use it."""
    state = unit_review_state(units, suggestions, resolved, reviewer)
    return set(state.loc[state["reviewed"], "unit_id"])


def review_counts(units: pd.DataFrame, codings: pd.DataFrame, resolved: pd.DataFrame) -> dict:
    """How much of a run people have reviewed (recorded in the manifest and summaries).

    ``codings`` are ``current_codings``: its rows with a rank are the run's suggestions."""
    suggested = codings[codings["rank"].notna()] if len(codings) else codings
    state = unit_review_state(units, suggested, resolved)
    codable = len(state)
    reviewed = int(state["reviewed"].sum())
    return {
        "decisions": len(resolved),
        "reviewers": sorted(set(resolved["reviewer"])) if len(resolved) else [],
        "units_reviewed": reviewed,
        "units_partly_reviewed": int((state["status"] == "partly reviewed").sum()),
        "codable_units": codable,
        "share_reviewed": round(reviewed / codable, 4) if codable else 0.0,
        "accepted_codings": int((codings["status"] == "accepted").sum()),
        "rejected_codings": int((codings["status"] == "rejected").sum()),
        "unreviewed_suggestions": int((codings["status"] == "suggested").sum()),
        "orphaned_decisions": int((resolved["anchor"] == "orphaned").sum()) if len(resolved) else 0,
    }
