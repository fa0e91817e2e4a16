"""What the review page reads from the project store, and what a saved form writes to it.

A run fixes the units, suggestions, codebook and transcript texts, so they are read once per run
(``Snapshot``); decisions change with every save and are read and anchored on each request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import (
    DONE,
    awaiting_confirmation,
    current_codings,
    resolve_anchors,
    unit_review_state,
)
from pipeline.review.errors import ReviewError
from pipeline.review.queue import review_table
from pipeline.store import NewDecision, Store, StoreError

ATTRIBUTES = ("role", "local_authority", "workstream", "network")


@dataclass(frozen=True)
class Snapshot:
    """The latest run's units, suggestions, codebook and transcript texts."""

    run_id: str
    units: pd.DataFrame
    suggestions: pd.DataFrame
    codebook: Codebook
    texts: dict[str, str]
    earlier: pd.DataFrame | None = None  # units of earlier runs (decisions.resolve_anchors)
    anchors: dict = field(default_factory=dict)  # anchors found against this run, reused

    @property
    def code_order(self) -> list[str]:
        return self.codebook.ids


class SnapshotCache:
    """Keeps the latest run's snapshot; a new run in the store replaces it on the next request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def get(self, store: Store) -> Snapshot:
        run_id = store.latest_run_id()
        if run_id is None:
            raise ReviewError("the project has no runs yet: run 'qcode run' first", store.path)
        with self._lock:
            if self._snapshot is None or self._snapshot.run_id != run_id:
                self._snapshot = Snapshot(
                    run_id,
                    store.units(run_id),
                    store.suggestions(run_id),
                    store.codebook(run_id),
                    store.transcript_texts(),
                    store.earlier_units(run_id),
                )
            return self._snapshot


def open_project(path: Path) -> Store:
    """Open an existing project store (never create one: a typo would show an empty project)."""
    if not path.is_file():
        raise ReviewError("no project store here: run 'qcode run' first or pass --store PATH", path)
    try:
        store = Store(path)
    except StoreError as error:
        raise ReviewError(error.problem, path) from None
    if store.latest_run_id() is None:
        store.close()
        raise ReviewError("the project has no runs yet: run 'qcode run' first", path)
    return store


@dataclass(frozen=True)
class ProjectView:
    """The project as one reviewer sees it on one request.

    ``scope`` is the reviewer whose decisions count (blind coding) or None for everybody's.
    """

    snapshot: Snapshot
    resolved: pd.DataFrame
    scope: str | None

    @classmethod
    def load(cls, store: Store, cache: SnapshotCache, scope: str | None) -> ProjectView:
        snapshot = cache.get(store)
        resolved = resolve_anchors(
            store.decisions(),
            snapshot.units,
            snapshot.texts,
            snapshot.codebook,
            snapshot.earlier,
            snapshot.anchors,
        )
        return cls(snapshot, resolved, scope)

    def table(self) -> pd.DataFrame:
        return review_table(
            self.snapshot.units, self.snapshot.suggestions, self.resolved, self.scope
        )

    def visible_decisions(self) -> pd.DataFrame:
        """All decisions, or only the reviewer's own in blind mode."""
        if self.scope is None:
            return self.resolved
        return self.resolved[self.resolved["reviewer"] == self.scope]

    def orphans(self) -> pd.DataFrame:
        decisions = self.visible_decisions()
        return decisions[decisions["anchor"] == "orphaned"].sort_values(
            "decision_id", ascending=False
        )

    def moves_to(self, unit_id: str) -> pd.DataFrame:
        """Decisions shown as "moved — confirm" whose candidate passage is this unit."""
        waiting = awaiting_confirmation(self.visible_decisions())
        return waiting[waiting["candidate_unit_id"] == unit_id].sort_values("decision_id")

    def unit(self, unit_id: str) -> pd.Series | None:
        """A codable unit of the run, or None."""
        units = self.snapshot.units
        rows = units[(units["unit_id"] == unit_id) & units["codable"]]
        return rows.iloc[0] if len(rows) else None

    def codings(self, unit_id: str) -> pd.DataFrame:
        """The unit's codes: suggested, accepted or rejected (the machine's order, then added)."""
        suggestions = self.snapshot.suggestions
        codings = current_codings(
            suggestions[suggestions["unit_id"] == unit_id], self._decisions_on(unit_id), self.scope
        )
        codings = codings[codings["unit_id"] == unit_id]
        return codings.sort_values(["rank", "code_id"], na_position="last").reset_index(drop=True)

    def review_state(self, unit_id: str) -> dict:
        """The unit's row of ``unit_review_state`` (reviewed, status, undecided, ...)."""
        units = self.snapshot.units
        suggestions = self.snapshot.suggestions
        state = unit_review_state(
            units[units["unit_id"] == unit_id],
            suggestions[suggestions["unit_id"] == unit_id],
            self._decisions_on(unit_id),
            self.scope,
        )
        return state.iloc[0].to_dict()

    def history(self, unit_id: str) -> pd.DataFrame:
        """Decisions on the unit, newest first (the reviewer's own only in blind mode)."""
        decisions = self.visible_decisions()
        on_unit = decisions[decisions["current_unit_id"] == unit_id]
        return on_unit.sort_values("decision_id", ascending=False)

    def _decisions_on(self, unit_id: str) -> pd.DataFrame:
        return self.resolved[self.resolved["current_unit_id"] == unit_id]


def turns_around(
    units: pd.DataFrame, texts: dict[str, str], unit: pd.Series, width: int = 1
) -> list[dict]:
    """The unit's turn with ``width`` turns either side, the unit's text split out for marking.

    Each turn: ``speaker``, attributes, ``current`` and ``before``/``marked``/``after`` text
    (all text for other turns is in ``before``).
    """
    text = texts.get(unit["transcript_id"], "")
    same = units[units["transcript_id"] == unit["transcript_id"]]
    turns = (
        same.groupby("turn_index")
        .agg(
            start=("start", "min"),
            end=("end", "max"),
            speaker=("speaker", "first"),
            speaker_kind=("speaker_kind", "first"),
        )
        .sort_index()
    )
    for column in ATTRIBUTES:
        turns[column] = same.groupby("turn_index")[column].first()
    order = list(turns.index)
    here = order.index(int(unit["turn_index"]))
    shown = []
    for index in order[max(0, here - width) : here + width + 1]:
        turn = turns.loc[index]
        start, end = int(turn["start"]), int(turn["end"])
        # An interviewer's row carries the interview's attributes, which are not theirs.
        own = turn["speaker_kind"] != "interviewer"
        entry = {"speaker": turn["speaker"], **{c: turn[c] if own else "" for c in ATTRIBUTES}}
        if index == int(unit["turn_index"]):
            entry.update(
                current=True,
                before=text[start : int(unit["start"])],
                marked=text[int(unit["start"]) : int(unit["end"])],
                after=text[int(unit["end"]) : end],
            )
        else:
            entry.update(current=False, before=text[start:end], marked="", after="")
        shown.append(entry)
    return shown


def decisions_from_form(
    unit_id: str,
    codings: pd.DataFrame,
    choices: dict[str, str],
    added: list[str],
    memo: str,
    done: bool = False,
    reviewed: bool = False,
) -> list[NewDecision]:
    """What a saved unit form means, as decisions; only changes to what the page showed.

    ``choices`` maps code ids to ``accept`` / ``reject`` / ``""`` (left as is); ``added`` are
    codes picked in "add code". A code the machine suggested is accepted or rejected; any other
    code is added or removed. "Change code" is a reject plus an add, saved together. The memo
    goes with every decision, or alone as a note when nothing else changed.

    ``done`` (the "Done" button): the reviewer marks the whole unit reviewed, so every suggested
    code still undecided and left as is is rejected, and a "done" mark is recorded (on a unit
    with no suggestion that is "reviewed, no code"). Nothing is written for a unit that was
    already ``reviewed`` and is left unchanged.
    """
    status = dict(zip(codings["code_id"], codings["status"], strict=True))
    suggested = set(codings.loc[codings["rank"].notna(), "code_id"])
    wanted = {code: choice for code, choice in choices.items() if choice}
    if done:
        for code in codings.loc[codings["rank"].notna(), "code_id"]:
            if status.get(code) == "suggested" and not wanted.get(code):
                wanted[code] = "reject"
    wanted.update(dict.fromkeys(added, "accept"))
    decisions = []
    for code, choice in wanted.items():
        if status.get(code) == ("accepted" if choice == "accept" else "rejected"):
            continue
        if choice == "accept":
            action = "accept" if code in suggested else "add"
        else:
            action = "reject" if code in suggested else "remove"
        decisions.append(NewDecision(unit_id, code, action, memo))
    if done and (decisions or not reviewed):
        decisions.append(NewDecision(unit_id, "", DONE, memo))
    if not decisions and memo:
        decisions.append(NewDecision(unit_id, "", "note", memo))
    return decisions
