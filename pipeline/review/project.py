"""What the review page reads from the project store, and what a saved form writes to it.

A run fixes the units, suggestions, codebook and transcript texts, so they are read once per run
(``Snapshot``). Decisions are append-only and their anchoring depends only on the run, so each
decision is read and anchored once: a request reads the decisions made since the last one
(``SnapshotCache.resolved``), and the queue table recomputes only the units those decisions
touched (``SnapshotCache.table``). Before this, every request re-anchored every decision and
rebuilt the table: 0.86 s per save at 10,200 decisions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import (
    CONFIRM_SOURCE,
    DONE,
    awaiting_confirmation,
    current_codings,
    resolve_anchors,
    unit_review_state,
)
from pipeline.review.errors import ReviewError
from pipeline.review.queue import order_queue, review_table
from pipeline.store import NewDecision, Store, StoreError
from pipeline.store_pg import is_url

ATTRIBUTES = ("role", "local_authority", "workstream", "network")
# review_table's columns that depend on decisions; the others come from the run alone.
DECIDED_COLUMNS = ("reviewed", "status", "decided_codes", "codes", "reviewers")


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
    # unit id -> its suggestions' rows / its transcript's units (filled on first use)
    _by_unit: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _by_transcript: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def code_order(self) -> list[str]:
        return self.codebook.ids

    def suggestions_of(self, unit_ids: set[str]) -> pd.DataFrame:
        """The suggestions on these units (an index lookup, not a scan of all suggestions)."""
        if not self._by_unit:
            for unit_id, rows in self.suggestions.groupby("unit_id").indices.items():
                self._by_unit[unit_id] = rows
        rows = [self._by_unit[u] for u in unit_ids if u in self._by_unit]
        return self.suggestions.iloc[np.concatenate(rows) if rows else []]

    def transcript_units(self, transcript_id: str) -> pd.DataFrame:
        if not self._by_transcript:
            self._by_transcript.update(dict(tuple(self.units.groupby("transcript_id"))))
        return self._by_transcript.get(transcript_id, self.units.iloc[0:0])


@dataclass
class _Decisions:
    """Every decision read so far, anchored to one snapshot's units."""

    resolved: pd.DataFrame
    high_water: int = 0  # the largest decision id read
    count: int = 0  # how many decisions that was
    tables: dict[str | None, tuple[int, pd.DataFrame]] = field(default_factory=dict)
    orders: dict[str, np.ndarray] = field(default_factory=dict)


class SnapshotCache:
    """Keeps the latest run's snapshot and its anchored decisions; a new run in the store
    replaces both on the next request, and new decisions are added to them as they come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._decisions: _Decisions | None = None

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
                self._decisions = None
            return self._snapshot

    def resolved(self, store: Store, snapshot: Snapshot) -> tuple[pd.DataFrame, int]:
        """All decisions anchored to ``snapshot`` and the largest id among them.

        Only decisions not read before are read and anchored. If the count of those read
        before changed (a decision committed out of id order, possible on a server database),
        everything is read again: a cache must never hide a decision.
        """
        with self._lock:
            cached = self._decisions
            if (
                cached is None
                or snapshot is not self._snapshot
                or store.decision_count(cached.high_water) != cached.count
            ):
                cached = _Decisions(_anchor(store.decisions(), snapshot))
            else:
                new = store.decisions(after=cached.high_water)
                if _confirms_a_move(new):
                    # A confirmation changes where an earlier decision applies: anchor all.
                    cached = _Decisions(_anchor(store.decisions(), snapshot))
                elif len(new):
                    fresh = _anchor(new, snapshot)
                    cached = _Decisions(
                        pd.concat([cached.resolved, fresh], ignore_index=True),
                        tables=cached.tables,
                        orders=cached.orders,
                    )
            if len(cached.resolved):
                cached.high_water = int(cached.resolved["decision_id"].max())
                cached.count = len(cached.resolved)
            if snapshot is self._snapshot:
                self._decisions = cached
            return cached.resolved, cached.high_water

    def table(
        self, snapshot: Snapshot, resolved: pd.DataFrame, high_water: int, scope: str | None
    ) -> pd.DataFrame:
        """``review_table`` for ``scope``, recomputing only the units decided on since the
        table was last built (a unit's row depends on its own suggestions and decisions)."""
        with self._lock:
            cached = self._decisions if snapshot is self._snapshot else None
            built = cached.tables.get(scope) if cached is not None else None
        if built is not None and built[0] == high_water:
            return built[1]
        if built is None or built[0] > high_water:
            table = review_table(snapshot.units, snapshot.suggestions, resolved, scope)
        else:
            table = _update_rows(built[1], snapshot, resolved, built[0], scope)
        with self._lock:
            if cached is not None and cached is self._decisions:
                current = cached.tables.get(scope)
                if current is None or current[0] <= high_water:
                    cached.tables[scope] = (high_water, table)
        return table

    def order(self, snapshot: Snapshot, table: pd.DataFrame, strategy: str) -> pd.DataFrame:
        """``order_queue`` of the table. The order depends only on the run (suggestions,
        scores, positions), so its permutation is computed once per run and strategy."""
        with self._lock:
            cached = self._decisions if snapshot is self._snapshot else None
            positions = cached.orders.get(strategy) if cached is not None else None
        if positions is None or len(positions) != len(table):
            keyed = table.assign(_position=np.arange(len(table)))
            positions = order_queue(keyed, strategy, snapshot.code_order)["_position"].to_numpy()
            if cached is not None:
                with self._lock:
                    cached.orders[strategy] = positions
        return table.iloc[positions].reset_index(drop=True)


def _confirms_a_move(decisions: pd.DataFrame) -> bool:
    """Whether new decisions include a person confirming a "moved — confirm" decision."""
    if decisions.empty or "source" not in decisions.columns:
        return False
    return bool((decisions["source"] == CONFIRM_SOURCE).any())


def _anchor(decisions: pd.DataFrame, snapshot: Snapshot) -> pd.DataFrame:
    return resolve_anchors(
        decisions,
        snapshot.units,
        snapshot.texts,
        snapshot.codebook,
        snapshot.earlier,
        snapshot.anchors,
    )


def _update_rows(
    table: pd.DataFrame, snapshot: Snapshot, resolved: pd.DataFrame, since: int, scope: str | None
) -> pd.DataFrame:
    """A copy of ``table`` with the rows of units decided on after decision ``since`` redone."""
    new = resolved[resolved["decision_id"] > since]
    touched = set(new["current_unit_id"].dropna())
    position = {u: i for i, u in enumerate(table["unit_id"])}
    touched = {u for u in touched if u in position}
    if not touched:
        return table
    units = snapshot.units[snapshot.units["unit_id"].isin(touched)]
    rows = review_table(
        units,
        snapshot.suggestions_of(touched),
        resolved[resolved["current_unit_id"].isin(touched)],
        scope,
    )
    updated = table.copy()
    for column in DECIDED_COLUMNS:
        values = updated[column].tolist()
        for unit_id, value in zip(rows["unit_id"], rows[column], strict=True):
            values[position[unit_id]] = value
        updated[column] = pd.Series(values, index=updated.index, dtype=table[column].dtype)
    return updated


def open_project(path: Path) -> Store:
    """Open an existing project store (never create one: a typo would show an empty project)."""
    if not is_url(path) and not Path(path).is_file():
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
    cache: SnapshotCache | None = None
    high_water: int = 0

    @classmethod
    def load(cls, store: Store, cache: SnapshotCache, scope: str | None) -> ProjectView:
        snapshot = cache.get(store)
        resolved, high_water = cache.resolved(store, snapshot)
        return cls(snapshot, resolved, scope, cache, high_water)

    def table(self) -> pd.DataFrame:
        if self.cache is not None:
            return self.cache.table(self.snapshot, self.resolved, self.high_water, self.scope)
        return review_table(
            self.snapshot.units, self.snapshot.suggestions, self.resolved, self.scope
        )

    def ordered(self, table: pd.DataFrame, strategy: str) -> pd.DataFrame:
        """The table in review order (``order_queue``)."""
        if self.cache is not None:
            return self.cache.order(self.snapshot, table, strategy)
        return order_queue(table, strategy, self.snapshot.code_order)

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
        codings = current_codings(
            self.snapshot.suggestions_of({unit_id}), self._decisions_on(unit_id), self.scope
        )
        codings = codings[codings["unit_id"] == unit_id]
        return codings.sort_values(["rank", "code_id"], na_position="last").reset_index(drop=True)

    def review_state(self, unit_id: str) -> dict:
        """The unit's row of ``unit_review_state`` (reviewed, status, undecided, ...)."""
        units = self.snapshot.units
        state = unit_review_state(
            units[units["unit_id"] == unit_id],
            self.snapshot.suggestions_of({unit_id}),
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
