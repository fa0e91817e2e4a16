"""What the review page reads from the project store, and what a saved form writes to it.

A run fixes the units, suggestions, codebook and transcript texts, so they are read and indexed
once per run (``Snapshot``: which row holds each unit, its suggestions, each interview's turns).
Decisions are append-only and their anchoring depends only on the run, so each decision is read
and anchored once: a request reads the decisions made since the last one
(``SnapshotCache.decisions``) and adds them to a ``DecisionLog`` that keeps each unit's
decisions as plain records; the queue table recomputes only the units those decisions touched
(``SnapshotCache.table``), and a unit's page reads only that unit's records. Before this, every
request re-anchored every decision and rebuilt the table (0.86 s per save at 10,200 decisions);
after a first fix, a fixed ~150 ms of pandas work per save on tiny frames remained (boolean masks
over every unit and decision to find one unit's rows, a merge per unit, copying every decision
on each save), which the indexes and the per-unit functions of ``pipeline.decisions``
(``unit_state``, ``unit_codings``) replace (docs/review.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import (
    CODING_COLUMNS,
    CONFIRM,
    CONFIRM_SOURCE,
    DONE,
    resolve_anchors,
    unit_codings,
    unit_state,
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
    """The latest run's units, suggestions, codebook and transcript texts, indexed once."""

    run_id: str
    units: pd.DataFrame
    suggestions: pd.DataFrame
    codebook: Codebook
    texts: dict[str, str]
    earlier: pd.DataFrame | None = None  # units of earlier runs (decisions.resolve_anchors)
    anchors: dict = field(default_factory=dict)  # anchors found against this run, reused
    unit_ids: frozenset[str] = frozenset()  # every unit of the run, codable or not
    codable_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    table_rows: dict[str, int] = field(default_factory=dict)  # codable unit -> review_table row
    unit_rows: dict[str, int] = field(default_factory=dict)  # codable unit -> row of ``units``
    suggested: dict[str, list[dict]] = field(default_factory=dict)  # unit -> its suggestions
    turns: dict[str, list[dict]] = field(default_factory=dict)  # interview -> its turns

    @classmethod
    def of(
        cls,
        run_id: str,
        units: pd.DataFrame,
        suggestions: pd.DataFrame,
        codebook: Codebook,
        texts: dict[str, str],
        earlier: pd.DataFrame | None = None,
    ) -> Snapshot:
        """A snapshot with its indexes built (once per run, before any request reads it)."""
        codable = np.flatnonzero(units["codable"].astype(bool).to_numpy())
        ids = units["unit_id"].to_numpy(dtype=object)
        suggested: dict[str, list[dict]] = {}
        for row in suggestions[["unit_id", "code_id", "score", "rank", "margin"]].to_dict(
            "records"
        ):
            suggested.setdefault(row["unit_id"], []).append(row)
        return cls(
            run_id,
            units,
            suggestions,
            codebook,
            texts,
            earlier,
            unit_ids=frozenset(ids),
            codable_ids=ids[codable],
            table_rows={u: i for i, u in enumerate(ids[codable])},
            unit_rows={ids[row]: int(row) for row in codable},
            suggested=suggested,
            turns=transcript_turns(units),
        )

    @property
    def code_order(self) -> list[str]:
        return self.codebook.ids

    def suggested_codes(self, unit_id: str) -> list[str]:
        return [row["code_id"] for row in self.suggested.get(unit_id, ())]

    def unit(self, unit_id: str) -> pd.Series | None:
        """A codable unit of the run, or None."""
        row = self.unit_rows.get(unit_id)
        return None if row is None else self.units.iloc[row]


@dataclass(frozen=True)
class DecisionLog:
    """The decisions read so far, anchored to one run: as frames in the order they were read
    (joined only when somebody needs them all) and as plain records by the unit they are
    anchored to, and the orphaned ones. A save adds one small chunk; copying every decision
    into a new frame on each save cost 30 ms at 50,000. Never changed once made: a request
    keeps a consistent view while the next one extends a copy."""

    chunks: tuple[pd.DataFrame, ...] = ()
    by_unit: dict[str, tuple[dict, ...]] = field(default_factory=dict)
    orphaned: tuple[dict, ...] = ()
    high_water: int = 0  # the largest decision id read
    count: int = 0  # how many decisions that was
    _joined: list[pd.DataFrame] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def of(cls, resolved: pd.DataFrame) -> DecisionLog:
        return cls().extended(resolved)

    def extended(self, fresh: pd.DataFrame) -> DecisionLog:
        """A new log with ``fresh`` (resolved decisions with larger ids than any read) added."""
        if fresh.empty and self.chunks:
            return self
        by_unit, orphaned = dict(self.by_unit), list(self.orphaned)
        added: dict[str, list[dict]] = {}
        for row in _records(fresh):
            if row["anchor"] == "orphaned":
                orphaned.append(row)
            if isinstance(row["current_unit_id"], str):
                added.setdefault(row["current_unit_id"], []).append(row)
        for unit_id, rows in added.items():
            by_unit[unit_id] = (*by_unit.get(unit_id, ()), *rows)
        chunks = (self._joined[0],) if self._joined else self.chunks
        return DecisionLog(
            (*chunks, fresh),
            by_unit,
            tuple(orphaned),
            max(self.high_water, int(fresh["decision_id"].max())) if len(fresh) else 0,
            self.count + len(fresh),
        )

    def frame(self) -> pd.DataFrame:
        """Every decision read, as one frame (joined once)."""
        if not self._joined:
            joined = self.chunks[0] if len(self.chunks) == 1 else pd.concat(self.chunks)
            self._joined.append(joined.reset_index(drop=True))
        return self._joined[0]

    def on(self, unit_id: str) -> tuple[dict, ...]:
        """The decisions anchored to a unit, oldest first."""
        return self.by_unit.get(unit_id, ())

    def units_after(self, since: int) -> set[str]:
        """Units that decisions with an id above ``since`` are anchored to."""
        touched: set[str] = set()
        for chunk in reversed(self.chunks):  # each chunk's ids are above the previous ones'
            ids = chunk["decision_id"].to_numpy()
            if not len(ids) or ids.max() <= since:
                break
            for unit_id, decision_id in zip(chunk["current_unit_id"], ids, strict=True):
                if decision_id > since and isinstance(unit_id, str):
                    touched.add(unit_id)
        return touched


def _records(frame: pd.DataFrame) -> list[dict]:
    """``frame.to_dict("records")`` (which costs ~10 ms even for one row)."""
    columns = list(frame.columns)
    values = [frame[c].tolist() for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


@dataclass
class _Decisions:
    """The decision log of the snapshot, and what the page built from it per scope."""

    log: DecisionLog
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
                self._snapshot = Snapshot.of(
                    run_id,
                    store.units(run_id),
                    store.suggestions(run_id),
                    store.codebook(run_id),
                    store.transcript_texts(),
                    store.earlier_units(run_id),
                )
                self._decisions = None
            return self._snapshot

    def decisions(self, store: Store, snapshot: Snapshot) -> DecisionLog:
        """All decisions anchored to ``snapshot``.

        Only decisions not read before are read and anchored. If the count of those read
        before changed (a decision committed out of id order, possible on a server database),
        everything is read again: a cache must never hide a decision.
        """
        with self._lock:
            cached = self._decisions
            if (
                cached is not None
                and snapshot is self._snapshot
                and store.decision_count() == cached.log.count
                and store.decision_count(cached.log.high_water) == cached.log.count
            ):
                return cached.log  # nothing new (the common case: a page without a save)
            if (
                cached is None
                or snapshot is not self._snapshot
                or store.decision_count(cached.log.high_water) != cached.log.count
            ):
                cached = _Decisions(DecisionLog.of(_anchor(store.decisions(), snapshot)))
            else:
                new = store.decisions(after=cached.log.high_water)
                if _confirms_a_move(new):
                    # A confirmation changes where an earlier decision applies: anchor all.
                    cached = _Decisions(DecisionLog.of(_anchor(store.decisions(), snapshot)))
                elif len(new):
                    log = cached.log.extended(_anchor(new, snapshot))
                    cached = _Decisions(log, tables=cached.tables, orders=cached.orders)
            if snapshot is self._snapshot:
                self._decisions = cached
            return cached.log

    def table(self, snapshot: Snapshot, log: DecisionLog, scope: str | None) -> pd.DataFrame:
        """``review_table`` for ``scope``, recomputing only the units decided on since the
        table was last built (a unit's row depends on its own suggestions and decisions)."""
        with self._lock:
            cached = self._decisions if snapshot is self._snapshot else None
            built = cached.tables.get(scope) if cached is not None else None
        high_water = log.high_water
        if built is not None and built[0] == high_water:
            return built[1]
        if built is None or built[0] > high_water:
            table = review_table(snapshot.units, snapshot.suggestions, log.frame(), scope)
        else:
            table = _update_rows(built[1], snapshot, log, built[0], scope)
        with self._lock:
            if cached is not None and cached is self._decisions:
                current = cached.tables.get(scope)
                if current is None or current[0] <= high_water:
                    cached.tables[scope] = (high_water, table)
        return table

    def positions(self, snapshot: Snapshot, table: pd.DataFrame, strategy: str) -> np.ndarray:
        """The permutation of the table's rows that ``order_queue`` gives. The order depends
        only on the run (suggestions, scores, positions), so it is computed once per run and
        strategy."""
        with self._lock:
            cached = self._decisions if snapshot is self._snapshot else None
            positions = cached.orders.get(strategy) if cached is not None else None
        if positions is None or len(positions) != len(table):
            positions = order_positions(table, strategy, snapshot.code_order)
            if cached is not None:
                with self._lock:
                    cached.orders[strategy] = positions
        return positions


def order_positions(table: pd.DataFrame, strategy: str, code_order: list[str]) -> np.ndarray:
    """The rows of ``table`` in ``order_queue``'s order."""
    keyed = table.assign(_position=np.arange(len(table)))
    return order_queue(keyed, strategy, code_order)["_position"].to_numpy()


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
        current_ids=snapshot.unit_ids,
    )


def decided_values(
    snapshot: Snapshot, unit_id: str, decisions: tuple[dict, ...], scope: str | None
) -> tuple:
    """A unit's ``DECIDED_COLUMNS`` of ``review_table`` from its own suggestions and the
    decisions anchored to it, without building the table's frames."""
    state = unit_state(unit_id, snapshot.suggested_codes(unit_id), decisions, scope)
    codings = unit_codings(unit_id, snapshot.suggested.get(unit_id, ()), decisions, scope)
    names = {
        d["reviewer"]
        for d in decisions
        if d["anchor"] != "orphaned" and (scope is None or d["reviewer"] == scope)
    }
    return (
        bool(state["reviewed"]),
        state["status"],
        state["decided_codes"],
        [row["code_id"] for row in codings],
        sorted(names),
    )


def _update_rows(
    table: pd.DataFrame, snapshot: Snapshot, log: DecisionLog, since: int, scope: str | None
) -> pd.DataFrame:
    """A copy of ``table`` with the rows of units decided on after decision ``since`` redone."""
    touched = {u for u in log.units_after(since) if u in snapshot.table_rows}
    if not touched:
        return table
    updated = table.copy(deep=False)  # copy-on-write: requests reading ``table`` keep it whole
    columns = {c: updated[c].tolist() for c in DECIDED_COLUMNS}
    for unit_id in touched:
        values = decided_values(snapshot, unit_id, log.on(unit_id), scope)
        for column, value in zip(DECIDED_COLUMNS, values, strict=True):
            columns[column][snapshot.table_rows[unit_id]] = value
    for column, values in columns.items():
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
    log: DecisionLog
    scope: str | None
    cache: SnapshotCache | None = None

    @classmethod
    def load(cls, store: Store, cache: SnapshotCache, scope: str | None) -> ProjectView:
        snapshot = cache.get(store)
        return cls(snapshot, cache.decisions(store, snapshot), scope, cache)

    @property
    def resolved(self) -> pd.DataFrame:
        """Every decision, anchored to the run."""
        return self.log.frame()

    @property
    def high_water(self) -> int:
        return self.log.high_water

    def table(self) -> pd.DataFrame:
        if self.cache is not None:
            return self.cache.table(self.snapshot, self.log, self.scope)
        return review_table(
            self.snapshot.units, self.snapshot.suggestions, self.resolved, self.scope
        )

    def positions(self, table: pd.DataFrame, strategy: str) -> np.ndarray:
        """The table's rows in review order (``order_queue``)."""
        if self.cache is not None:
            return self.cache.positions(self.snapshot, table, strategy)
        return order_positions(table, strategy, self.snapshot.code_order)

    def ordered(self, table: pd.DataFrame, strategy: str) -> pd.DataFrame:
        """The table in review order (``order_queue``)."""
        return table.iloc[self.positions(table, strategy)].reset_index(drop=True)

    def visible_decisions(self) -> pd.DataFrame:
        """All decisions, or only the reviewer's own in blind mode."""
        if self.scope is None:
            return self.resolved
        return self.resolved[self.resolved["reviewer"] == self.scope]

    def _visible(self, rows: tuple[dict, ...]) -> list[dict]:
        return [d for d in rows if self.scope is None or d["reviewer"] == self.scope]

    def orphans(self) -> pd.DataFrame:
        """Orphaned decisions, newest first."""
        rows = sorted(self._visible(self.log.orphaned), key=lambda d: -d["decision_id"])
        return pd.DataFrame(rows, columns=self.resolved.columns)

    def orphan_count(self) -> int:
        return len(self._visible(self.log.orphaned))

    def moves_to(self, unit_id: str) -> list[dict]:
        """Decisions shown as "moved — confirm" whose candidate passage is this unit."""
        waiting = [
            d
            for d in self._visible(self.log.orphaned)
            if str(d["reason"]).startswith(CONFIRM) and d["candidate_unit_id"] == unit_id
        ]
        return sorted(waiting, key=lambda d: d["decision_id"])

    def unit(self, unit_id: str) -> pd.Series | None:
        """A codable unit of the run, or None."""
        return self.snapshot.unit(unit_id)

    def coding_rows(self, unit_id: str) -> list[dict]:
        """The unit's codes: suggested, accepted or rejected (the machine's order, then added)."""
        rows = unit_codings(
            unit_id, self.snapshot.suggested.get(unit_id, ()), self.log.on(unit_id), self.scope
        )
        return sorted(rows, key=lambda r: (_missing(r["rank"]), r["rank"] or 0, r["code_id"]))

    def codings(self, unit_id: str) -> pd.DataFrame:
        """``coding_rows`` as a frame. Ranks stay whole numbers (None for codes a person
        added), not floats beside NaN."""
        rows = self.coding_rows(unit_id)
        floats = ("score", "margin")
        return pd.DataFrame(
            {
                c: np.array([r[c] for r in rows], dtype=float if c in floats else object)
                for c in CODING_COLUMNS
            }
        )

    def review_state(self, unit_id: str) -> dict:
        """The unit's row of ``unit_review_state`` (reviewed, status, undecided, ...)."""
        return unit_state(
            unit_id, self.snapshot.suggested_codes(unit_id), self.log.on(unit_id), self.scope
        )

    def history(self, unit_id: str) -> list[dict]:
        """Decisions on the unit, newest first (the reviewer's own only in blind mode)."""
        return sorted(self._visible(self.log.on(unit_id)), key=lambda d: -d["decision_id"])


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def transcript_turns(units: pd.DataFrame) -> dict[str, list[dict]]:
    """Per interview, its turns in order: ``turn_index``, ``start``, ``end``, ``speaker``,
    ``speaker_kind`` and the attributes (the first given in the turn)."""
    if units.empty:
        return {}
    grouped = units.groupby(["transcript_id", "turn_index"], sort=True)
    turns = grouped.agg(
        start=("start", "min"),
        end=("end", "max"),
        speaker=("speaker", "first"),
        speaker_kind=("speaker_kind", "first"),
        **{column: (column, "first") for column in ATTRIBUTES},
    ).reset_index()
    out: dict[str, list[dict]] = {}
    for row in turns.to_dict("records"):
        out.setdefault(row["transcript_id"], []).append(row)
    return out


def turns_around(
    units: pd.DataFrame,
    texts: dict[str, str],
    unit: pd.Series,
    width: int = 1,
    turns: list[dict] | None = None,
) -> list[dict]:
    """The unit's turn with ``width`` turns either side, the unit's text split out for marking.

    Each turn: ``speaker``, attributes, ``current`` and ``before``/``marked``/``after`` text
    (all text for other turns is in ``before``). ``turns``: the interview's
    ``transcript_turns``, when the caller keeps them (else they are worked out from ``units``).
    """
    text = texts.get(unit["transcript_id"], "")
    if turns is None:
        same = units[units["transcript_id"] == unit["transcript_id"]]
        turns = transcript_turns(same).get(unit["transcript_id"], [])
    order = [int(turn["turn_index"]) for turn in turns]
    here = order.index(int(unit["turn_index"]))
    shown = []
    for turn in turns[max(0, here - width) : here + width + 1]:
        start, end = int(turn["start"]), int(turn["end"])
        # An interviewer's row carries the interview's attributes, which are not theirs.
        own = turn["speaker_kind"] != "interviewer"
        entry = {"speaker": turn["speaker"], **{c: turn[c] if own else "" for c in ATTRIBUTES}}
        if int(turn["turn_index"]) == int(unit["turn_index"]):
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
