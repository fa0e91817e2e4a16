"""What reports read from the project store: the latest run and the current state of codings.

Reports are drafted from what people decided: accepted codings by default, unreviewed machine
suggestions only when asked (and then marked). Rejected codings never count. Participants are
told apart by interview and speaker label, and described by their attributes only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import (
    current_codings,
    project_decisions,
    resolve_anchors,
    review_counts,
    reviewed_units,
)
from pipeline.report.errors import ReportError
from pipeline.store import Store, StoreError
from pipeline.store_pg import is_url

ATTRIBUTES = ("role", "local_authority", "workstream", "network")
# Attributes of an interview that describe the interview, not the person.
INTERVIEW_KEYS = ("interview_id", "date", "interview_type")


@dataclass
class ProjectData:
    """One consistent read of the store for one report.

    ``units``: the latest run's units with ``position`` (reading order within the interview)
    and ``person`` (interview and speaker). ``codings``: ``current_codings`` (every status).
    ``people``: one row per participant with their attributes (never names).
    """

    store_path: Path
    run_id: str
    manifest: dict
    codebook: Codebook
    units: pd.DataFrame
    codings: pd.DataFrame
    texts: dict[str, str]
    people: pd.DataFrame
    review: dict
    read_at: str
    reviewed_units: frozenset[str] = frozenset()  # units a person reviewed (denominators)
    _counted: dict[bool, pd.DataFrame] = field(default_factory=dict, repr=False)

    def reviewed_people(self) -> pd.DataFrame:
        """``people`` whose units were reviewed: who the report's figures can speak for. A
        person with an accepted coding on a partly reviewed unit counts too, so that nobody
        raising a code is left out of the "of N"."""
        accepted = set(self.codings.loc[self.codings["status"] == "accepted", "unit_id"])
        units = self.units[
            (self.units["speaker_kind"] == "participant")
            & self.units["unit_id"].isin(self.reviewed_units | accepted)
        ]
        return self.people[self.people["person"].isin(set(units["person"]))]

    def counted(self, include_suggestions: bool) -> pd.DataFrame:
        """Codings that count: accepted, plus unreviewed suggestions when asked; each with its
        unit's columns. ``accepted`` says whether a person accepted it. Read-only; cached."""
        if include_suggestions not in self._counted:
            self._counted[include_suggestions] = self._count(include_suggestions)
        return self._counted[include_suggestions]

    def _count(self, include_suggestions: bool) -> pd.DataFrame:
        statuses = ("accepted", "suggested") if include_suggestions else ("accepted",)
        rows = self.codings[self.codings["status"].isin(statuses)]
        rows = rows[["unit_id", "code_id", "status", "score"]].merge(
            self.units, on="unit_id", how="inner"
        )
        rows = rows[rows["speaker_kind"] == "participant"].copy()
        rows["accepted"] = rows["status"] == "accepted"
        return rows.reset_index(drop=True)

    def person_attributes(self, person: str) -> dict[str, str]:
        row = self.people.loc[person]
        return {
            k: v
            for k, v in row.items()
            if k not in ("person", "transcript_id") and isinstance(v, str) and v
        }


def person_key(transcript_id: str, speaker: str) -> str:
    return f"{transcript_id}/{speaker}"


def load_project(store_path: Path, reviewer: str | None = None) -> ProjectData:
    """Read the latest run and the current codings (``reviewer``: only their decisions, for
    blind coding). Refuses a missing store rather than creating an empty one."""
    store_path = store_path if is_url(store_path) else Path(store_path)
    if not is_url(store_path) and not store_path.is_file():
        raise ReportError(
            "no project store here: run 'qcode run' first or pass --store PATH", store_path
        )
    try:
        store = Store(store_path)
    except StoreError as error:
        raise ReportError(error.problem, store_path) from None
    try:
        run_id = store.latest_run_id()
        if run_id is None:
            raise ReportError("the project has no runs yet: run 'qcode run' first", store_path)
        codebook = store.codebook(run_id)
        units = store.units(run_id)
        texts = store.transcript_texts()
        resolved = resolve_anchors(
            store.decisions(), units, texts, codebook, store.earlier_units(run_id)
        )
        suggestions = store.suggestions(run_id)
        codings = current_codings(suggestions, resolved, reviewer)
        attributes = store.transcript_attributes()
        manifest = store.manifest(run_id)
    finally:
        store.close()
    units = units.copy()
    units["position"] = units.groupby("transcript_id").cumcount()
    units["person"] = [
        person_key(t, s) for t, s in zip(units["transcript_id"], units["speaker"], strict=True)
    ]
    if reviewer is not None:
        resolved = resolved[resolved["reviewer"] == reviewer]
    return ProjectData(
        store_path=store_path,
        run_id=run_id,
        manifest=manifest,
        codebook=codebook,
        units=units,
        codings=codings,
        texts=texts,
        people=_people(units, attributes),
        review=review_counts(units, codings, resolved),
        read_at=datetime.now(UTC).isoformat(timespec="seconds"),
        # The one definition of "reviewed" (every suggested code decided, or marked done).
        reviewed_units=frozenset(
            reviewed_units(units, suggestions, project_decisions(resolved), reviewer)
        ),
    )


def _people(units: pd.DataFrame, attributes: dict[str, tuple[dict, dict]]) -> pd.DataFrame:
    """One row per participant: the interview's attributes overridden by the speaker's own
    (group interviews), with extra attributes kept (e.g. ``school_type``)."""
    speakers = units[units["speaker_kind"] == "participant"].drop_duplicates("person")
    rows = []
    for unit in speakers.itertuples(index=False):
        interview, own = attributes.get(unit.transcript_id, ({}, {}))
        merged = {
            str(k): str(v)
            for k, v in interview.items()
            if k not in INTERVIEW_KEYS and not isinstance(v, dict | list)
        }
        merged.update({str(k): str(v) for k, v in own.get(unit.speaker, {}).items()})
        for column in ATTRIBUTES:  # what the run recorded for the unit wins
            if getattr(unit, column):
                merged[column] = getattr(unit, column)
        rows.append({"person": unit.person, "transcript_id": unit.transcript_id, **merged})
    people = pd.DataFrame(rows, columns=None if rows else ["person", "transcript_id"])
    for column in ATTRIBUTES:
        if column not in people.columns:
            people[column] = ""
    return people.fillna("").set_index("person", drop=False)
