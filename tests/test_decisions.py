"""Decisions survive re-runs, codebook edits, model changes and transcript edits."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.codebook import parse_codebook
from pipeline.decisions import current_codings, resolve_anchors, text_sha, unit_statuses
from pipeline.store import NewDecision, Store
from tests.conftest import CODEBOOK, SAMPLE

BOOK = parse_codebook("""
name: t
groups: {g: {label: G}}
codes:
  - {id: a, label: A, group: g, kind: enabler, definition: A thing.}
  - {id: b, label: B, group: g, kind: inhibitor, definition: B thing.}
renamed: {old_a: a}
""")

TEXT = "One sentence here. Two sentence there. Three at the end."


def units_of(text: str, spans: list[tuple[int, int]], tid: str = "T") -> pd.DataFrame:
    rows = [
        {"unit_id": f"{tid}:{s}-{e}", "transcript_id": tid, "start": s, "end": e, "text": text[s:e]}
        for s, e in spans
    ]
    return pd.DataFrame(rows, columns=["unit_id", "transcript_id", "start", "end", "text"])


def decision(
    i: int, unit: pd.Series, code: str, action: str = "accept", reviewer: str = "ann"
) -> dict:
    return {
        "decision_id": i,
        "reviewer": reviewer,
        "at": f"t{i}",
        "unit_id": unit["unit_id"],
        "transcript_id": unit["transcript_id"],
        "start": unit["start"],
        "end": unit["end"],
        "text": unit["text"],
        "text_sha256": text_sha(unit["text"]),
        "code_id": code,
        "action": action,
        "memo": "",
    }


SENTENCES = [(0, 18), (19, 38), (39, 56)]


def test_unchanged_units_keep_their_decisions():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[1], "a")])
    resolved = resolve_anchors(decisions, units, {"T": TEXT}, BOOK)
    assert resolved.loc[0, "anchor"] == "kept"
    assert resolved.loc[0, "current_unit_id"] == units.iloc[1]["unit_id"]


def test_decisions_follow_text_that_moved():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[2], "a")])
    edited = "A new opening line. " + TEXT
    new_units = units_of(edited, [(s + 20, e + 20) for s, e in SENTENCES])
    resolved = resolve_anchors(decisions, new_units, {"T": edited}, BOOK)
    assert resolved.loc[0, "anchor"] == "moved"
    assert resolved.loc[0, "current_unit_id"] == new_units.iloc[2]["unit_id"]


def test_decisions_follow_into_larger_units():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[1], "a")])
    windows = units_of(TEXT, [(0, 38), (39, 56)])
    resolved = resolve_anchors(decisions, windows, {"T": TEXT}, BOOK)
    assert resolved.loc[0, "current_unit_id"] == windows.iloc[0]["unit_id"]


def test_decisions_on_deleted_text_are_orphaned_not_dropped():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[1], "a"), decision(2, units.iloc[0], "b")])
    edited = "One sentence here. Three at the end."
    resolved = resolve_anchors(
        decisions, units_of(edited, [(0, 18), (19, 36)]), {"T": edited}, BOOK
    )
    assert resolved["anchor"].tolist() == ["orphaned", "kept"]
    assert "no longer in the transcript" in resolved.loc[0, "reason"]
    gone = resolve_anchors(decisions, units_of("", []), {}, BOOK)
    assert (gone["anchor"] == "orphaned").all()
    assert "no longer in the project" in gone.loc[0, "reason"]


def test_renamed_codes_carry_decisions_and_removed_codes_orphan_them():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame(
        [decision(1, units.iloc[0], "old_a"), decision(2, units.iloc[1], "gone_code")]
    )
    resolved = resolve_anchors(decisions, units, {"T": TEXT}, BOOK)
    assert resolved.loc[0, "current_code_id"] == "a"
    assert pd.isna(resolved.loc[1, "current_code_id"])
    assert resolved["anchor"].tolist() == ["kept", "orphaned"]
    assert "renamed" in resolved.loc[1, "reason"]


def test_current_state_latest_decision_wins():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame(
        [
            decision(1, units.iloc[0], "a", "accept"),
            decision(2, units.iloc[0], "a", "reject", reviewer="bob"),
            decision(3, units.iloc[1], "b", "add"),
        ]
    )
    suggestions = pd.DataFrame(
        [
            {
                "unit_id": units.iloc[0]["unit_id"],
                "code_id": "a",
                "score": 0.5,
                "rank": 1,
                "margin": 0.1,
            },
            {
                "unit_id": units.iloc[2]["unit_id"],
                "code_id": "a",
                "score": 0.6,
                "rank": 1,
                "margin": 0.2,
            },
        ]
    )
    resolved = resolve_anchors(decisions, units, {"T": TEXT}, BOOK)
    state = current_codings(suggestions, resolved).set_index(["unit_id", "code_id"])["status"]
    assert state[(units.iloc[0]["unit_id"], "a")] == "rejected"
    assert state[(units.iloc[1]["unit_id"], "b")] == "accepted"
    assert state[(units.iloc[2]["unit_id"], "a")] == "suggested"
    ann = current_codings(suggestions, resolved, reviewer="ann").set_index(["unit_id", "code_id"])[
        "status"
    ]
    assert ann[(units.iloc[0]["unit_id"], "a")] == "accepted"  # blind: bob's view is hidden
    statuses = unit_statuses(resolved)
    assert statuses[units.iloc[0]["unit_id"]] == "rejected"
    assert statuses[units.iloc[1]["unit_id"]] == "changed"


@pytest.mark.slow
def test_hundred_decisions_survive_rerun_with_new_threshold_and_codebook(
    prefect_harness, tmp_path, cache_dir
):
    """Make 100 decisions, re-run with another threshold and an edited codebook (one code
    renamed, definitions changed): all 100 are still there."""
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    out, cache = tmp_path / "out", cache_dir
    first = code_transcripts(SAMPLE, CODEBOOK, out, Settings(cache_dir=cache))
    store = Store(out / "project.sqlite")
    suggestions = store.suggestions()
    picked = suggestions.drop_duplicates("unit_id").head(100)
    decisions = [
        NewDecision(r.unit_id, r.code_id, "accept" if i % 3 else "reject", memo=f"m{i}")
        for i, r in enumerate(picked.itertuples())
    ]
    store.decide("ann", decisions)
    store.close()

    text = CODEBOOK.read_text(encoding="utf-8")
    edited = (
        text.replace("id: ts.trust\n", "id: ts.trust_and_safety\n").replace(
            "The evaluation", "The West Partnership evaluation"
        )
        + "renamed:\n"
        "  ts.trust: ts.trust_and_safety\n"
    )
    book = tmp_path / "edited.yaml"
    book.write_text(edited, encoding="utf-8")
    second = code_transcripts(SAMPLE, book, out, Settings(cache_dir=cache, threshold=0.5))
    assert second != first
    codings = pd.read_csv(second / "codings.csv", keep_default_na=False)
    decided = codings[codings["status"].isin(["accepted", "rejected"])]
    expected = {
        (d.unit_id, "ts.trust_and_safety" if d.code_id == "ts.trust" else d.code_id)
        for d in decisions
    }
    assert set(zip(decided["unit_id"], decided["code_id"], strict=True)) == expected
    assert len(decided) == 100
    assert pd.read_csv(second / "orphaned_decisions.csv").empty
    manifest = json.loads((second / "manifest.json").read_text())
    # Reviewed per code: a unit whose other suggested codes nobody decided is partly reviewed.
    complete = codings.groupby("unit_id")["status"].agg(lambda s: bool((s != "suggested").all()))
    decided_units = {d.unit_id for d in decisions}
    review = manifest["review"]
    assert review["units_reviewed"] == sum(bool(complete.get(u, True)) for u in decided_units)
    assert review["units_reviewed"] + review["units_partly_reviewed"] == 100
    summary = (second / "summaries" / "index.md").read_text()
    assert "ts.trust_and_safety" in summary


@pytest.mark.slow
def test_transcript_edit_keeps_unchanged_decisions_and_reports_orphans(
    prefect_harness, tmp_path, cache_dir
):
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    source = SAMPLE / "wp01_head_teacher.md"
    shutil.copy(source, folder)
    out, cache = tmp_path / "out", cache_dir
    code_transcripts(folder, CODEBOOK, out, Settings(cache_dir=cache))
    with Store(out / "project.sqlite") as store:
        units = store.units()
        codable = units[units["codable"]].reset_index(drop=True)
        keep, lose = codable.iloc[10], codable.iloc[20]
        store.decide(
            "ann",
            [
                NewDecision(keep.unit_id, "ts.trust", "accept"),
                NewDecision(lose.unit_id, "ts.time", "add"),
            ],
        )
    text = (folder / source.name).read_text(encoding="utf-8")
    head, body = text.split("\n---\n", 1)
    body = body.replace(lose.text, "")
    body = "\nInterviewer: A new first question, added in the edit?\n\n" + body
    (folder / source.name).write_text(head + "\n---\n" + body, encoding="utf-8")
    run = code_transcripts(folder, CODEBOOK, out, Settings(cache_dir=cache))
    codings = pd.read_csv(run / "codings.csv", keep_default_na=False)
    accepted = codings[codings["status"] == "accepted"]
    assert accepted["code_id"].tolist() == ["ts.trust"]
    new_units = pd.read_csv(run / "units.csv", keep_default_na=False).set_index("unit_id")
    assert new_units.loc[accepted["unit_id"].iloc[0], "text"] == keep.text
    orphaned = pd.read_csv(run / "orphaned_decisions.csv", keep_default_na=False)
    assert orphaned["text"].tolist() == [lose.text]
    assert "no longer in the transcript" in orphaned["reason"].iloc[0]


# -- review state per code: the one definition of "reviewed" -------------------------------------


def _state_tables():
    units = units_of(TEXT, SENTENCES).assign(codable=True)
    ids = units["unit_id"].tolist()
    suggestions = pd.DataFrame(
        {
            "unit_id": [ids[0], ids[0], ids[1]],
            "code_id": ["a", "b", "a"],
            "score": [0.6, 0.5, 0.7],
            "rank": [1, 2, 1],
            "margin": [0.1, 0.1, 0.3],
        }
    )
    return units, suggestions, ids


def _state(units, suggestions, decisions, reviewer=None):
    from pipeline.decisions import unit_review_state

    resolved = resolve_anchors(pd.DataFrame(decisions), units, {"T": TEXT}, BOOK)
    return unit_review_state(units, suggestions, resolved, reviewer).set_index("unit_id")


def test_a_unit_is_reviewed_only_when_every_suggested_code_has_a_decision():
    units, suggestions, ids = _state_tables()
    first = [decision(1, units.iloc[0], "a", "accept")]
    state = _state(units, suggestions, first)
    assert state.loc[ids[0], "status"] == "partly reviewed"
    assert not state.loc[ids[0], "reviewed"] and state.loc[ids[0], "undecided"] == 1
    assert state.loc[ids[1], "status"] == "unreviewed"
    both = [*first, decision(2, units.iloc[0], "b", "reject", reviewer="bob")]
    state = _state(units, suggestions, both)
    assert state.loc[ids[0], "reviewed"] and state.loc[ids[0], "status"] == "changed"
    assert state.loc[ids[0], "decided_codes"] == ["a", "b"]
    # Blind coding: each reviewer's own decisions only; neither has decided both codes.
    assert not _state(units, suggestions, both, reviewer="ann").loc[ids[0], "reviewed"]
    assert not _state(units, suggestions, both, reviewer="bob").loc[ids[0], "reviewed"]


def test_a_unit_without_suggestions_needs_a_code_or_a_done_mark():
    units, suggestions, ids = _state_tables()
    assert _state(units, suggestions, [decision(1, units.iloc[0], "a")]).loc[ids[2], "status"] == (
        "unreviewed"
    )
    done = _state(units, suggestions, [decision(1, units.iloc[2], "", "done")])
    assert done.loc[ids[2], "reviewed"] and done.loc[ids[2], "status"] == "no code"
    added = _state(units, suggestions, [decision(1, units.iloc[2], "b", "add")])
    assert added.loc[ids[2], "reviewed"] and added.loc[ids[2], "status"] == "changed"
    noted = _state(units, suggestions, [decision(1, units.iloc[2], "", "note")])
    assert noted.loc[ids[2], "status"] == "unreviewed", "a memo alone reviews nothing"


def test_a_new_suggestion_returns_a_reviewed_unit_to_the_queue():
    units, suggestions, ids = _state_tables()
    decided = [decision(1, units.iloc[1], "a", "accept")]
    assert _state(units, suggestions, decided).loc[ids[1], "status"] == "accepted"
    # The next run (a code added to the codebook, say) also suggests b on that unit.
    extra = pd.DataFrame(
        [{"unit_id": ids[1], "code_id": "b", "score": 0.5, "rank": 2, "margin": 0.2}]
    )
    state = _state(units, pd.concat([suggestions, extra]), decided)
    assert not state.loc[ids[1], "reviewed"] and state.loc[ids[1], "status"] == "partly reviewed"


def test_orphaned_decisions_review_nothing_and_counts_use_the_same_definition():
    from pipeline.decisions import review_counts, reviewed_units

    units, suggestions, ids = _state_tables()
    decisions = pd.DataFrame(
        [
            decision(1, units.iloc[0], "a", "accept"),  # partly: b undecided
            decision(2, units.iloc[1], "a", "reject"),  # reviewed
            decision(3, units.iloc[2], "gone_code", "add"),  # orphaned: its code is gone
        ]
    )
    resolved = resolve_anchors(decisions, units, {"T": TEXT}, BOOK)
    assert reviewed_units(units, suggestions, resolved) == {ids[1]}
    counts = review_counts(units, current_codings(suggestions, resolved), resolved)
    assert (counts["units_reviewed"], counts["units_partly_reviewed"]) == (1, 1)
    assert counts["codable_units"] == 3 and counts["share_reviewed"] == round(1 / 3, 4)


def test_done_marks_are_stored_and_review_a_unit_with_no_suggestion(project_store):
    from pipeline.decisions import reviewed_units

    with Store(project_store) as store:
        units, suggestions = store.units(), store.suggestions()
        codable = units.loc[units["codable"], "unit_id"]
        bare = codable[~codable.isin(suggestions["unit_id"])].iloc[0]
        coded = suggestions["unit_id"].iloc[0]
        store.decide("ann", [NewDecision(bare, "", "done"), NewDecision(coded, "", "done")])
        assert store.decisions()["action"].tolist() == ["done", "done"]
        # A bare mark on a unit whose suggestions nobody decided does not review it (the page's
        # Done button rejects them with it).
        assert reviewed_units(units, suggestions, store.resolved_decisions()) == {bare}
