"""Decisions survive re-runs, codebook edits, model changes and transcript edits."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.codebook import parse_codebook
from pipeline.decisions import (
    CONFIRM_SOURCE,
    MoveError,
    confirmation,
    current_codings,
    in_reading_order,
    latest_decisions,
    resolve_anchors,
    text_sha,
    unit_statuses,
)
from pipeline.outputs import orphans_line
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
def test_a_run_folders_codings_read_like_the_transcripts():
    """By transcript in run order, units by position, a unit's codes by rank and codes people
    added after them; each row names its transcript."""
    units = pd.concat([units_of(TEXT, SENTENCES, "T2"), units_of(TEXT, SENTENCES, "T1")])
    units = units.reset_index(drop=True)
    first, last = units.iloc[0], units.iloc[5]
    decisions = pd.DataFrame(
        [decision(1, last, "b", "add"), decision(2, first, "b", "add"), decision(3, first, "a")]
    )
    suggestions = pd.DataFrame(
        {
            "unit_id": [last["unit_id"], first["unit_id"], first["unit_id"]],
            "code_id": ["a", "a", "b"],
            "score": [0.5, 0.4, 0.3],
            "rank": [1, 2, 1],
            "margin": [0.1, 0.1, 0.1],
        }
    )
    resolved = resolve_anchors(decisions, units, {"T1": TEXT, "T2": TEXT}, BOOK)
    table = in_reading_order(current_codings(suggestions, resolved), units)
    assert table.columns[:3].tolist() == ["unit_id", "transcript_id", "code_id"]
    rows = list(zip(table["unit_id"], table["code_id"], table["status"], strict=True))
    assert rows == [
        (first["unit_id"], "b", "accepted"),  # rank 1, then rank 2
        (first["unit_id"], "a", "accepted"),
        (last["unit_id"], "a", "suggested"),
        (last["unit_id"], "b", "accepted"),  # added by a person: after the ranked code
    ]
    assert table["transcript_id"].tolist() == ["T2", "T2", "T1", "T1"]
    assert in_reading_order(table.iloc[:0].drop(columns="transcript_id"), units).empty


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
    # qcode run's closing summary says so.
    review = json.loads((run / "manifest.json").read_text())["review"]
    line = orphans_line(review, run)
    assert line.startswith("1 reviewer's decision no longer attaches to a unit (text or code")
    assert str(run / "orphaned_decisions.csv") in line
    assert orphans_line({**review, "orphaned_decisions": 3, "decisions_to_confirm": 2}, run)
    assert orphans_line({**review, "orphaned_decisions": 0}, run) == ""


# -- anchoring never guesses (issue 14 point 3) -------------------------------------------------


def test_a_quoted_copy_inserted_before_does_not_take_the_decision():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[1], "a")])
    earlier = units.assign(version="r1")
    quote = "Two sentence there. "  # an inserted exchange quoting the decided sentence
    edited = "Q: " + quote + "Yes. " + TEXT
    shift = len("Q: " + quote + "Yes. ")
    new_units = units_of(
        edited, [(3, 22), (23, 27), *[(s + shift, e + shift) for s, e in SENTENCES]]
    )
    resolved = resolve_anchors(decisions, new_units, {"T": edited}, BOOK, earlier)
    assert resolved.loc[0, "anchor"] == "moved"
    original = new_units.iloc[3]
    assert original["text"] == units.iloc[1]["text"]
    assert resolved.loc[0, "current_unit_id"] == original["unit_id"]  # not the quote at 3
    # Without the earlier layout nothing says which copy: shown as "moved — confirm".
    blind = resolve_anchors(decisions, new_units, {"T": edited}, BOOK)
    assert blind.loc[0, "anchor"] == "orphaned" and blind.loc[0, "current_unit_id"] is None
    assert blind.loc[0, "reason"].startswith("moved — confirm: its text now appears 2 times")
    assert blind.loc[0, "candidate_unit_id"] == new_units.iloc[0]["unit_id"]  # the nearest


def test_a_typo_fix_is_moved_confirm_until_a_person_confirms():
    units = units_of(TEXT, SENTENCES)
    decisions = pd.DataFrame([decision(1, units.iloc[1], "a")])
    fixed = TEXT.replace("Two sentence there.", "Two sentences there.")
    new_units = units_of(fixed, [(0, 18), (19, 39), (40, 57)])
    resolved = resolve_anchors(decisions, new_units, {"T": fixed}, BOOK)
    row = resolved.iloc[0]
    assert row["anchor"] == "orphaned" and row["current_unit_id"] is None
    assert row["reason"] == 'moved — confirm: its text was edited; now "Two sentences there."'
    assert row["candidate_unit_id"] == new_units.iloc[1]["unit_id"]
    assert latest_decisions(resolved).empty  # never applied before a person confirms
    unit, memo = confirmation(resolved, 1)
    note = {**decision(2, new_units.iloc[1], ""), "action": "note", "memo": memo}
    both = pd.DataFrame(
        [{**decision(1, units.iloc[1], "a"), "source": "web"}, {**note, "source": CONFIRM_SOURCE}]
    )
    after = resolve_anchors(both, new_units, {"T": fixed}, BOOK)
    assert after.loc[0, "anchor"] == "moved" and after.loc[0, "current_unit_id"] == unit
    with pytest.raises(MoveError, match="not waiting"):
        confirmation(after, 1)
    # A wholly different sentence is no candidate: plainly orphaned.
    other = TEXT.replace("Two sentence there.", "Something else entirely.")
    gone = resolve_anchors(decisions, units_of(other, [(0, 18), (19, 44)]), {"T": other}, BOOK)
    assert gone.loc[0, "reason"] == "its text is no longer in the transcript"


def test_real_store_quote_and_typo_cases(
    project_location, tmp_path, nlp, encoder, codebook, embedding_cache
):
    """Both issue cases on a real project: an inserted exchange quoting a decided sentence
    leaves the decision with the original; a one-word fix shows as "moved — confirm"."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import rerun_with_edit

    with Store(project_location) as store:
        units = store.units()
    mine = units[(units["transcript_id"] == "WP-02") & units["codable"]].reset_index(drop=True)
    quoted, typo = mine.iloc[12], mine.iloc[20]
    assert quoted["text"] != typo["text"] and len(typo["text"].split()) > 3
    with Store(project_location) as store:
        store.decide(
            "ann",
            [
                NewDecision(quoted.unit_id, "ts.trust", "add"),
                NewDecision(typo.unit_id, "ts.time", "add"),
            ],
        )
    words = typo["text"].split(" ")
    fixed = " ".join([*words[:-1], "X" + words[-1]])

    def edit_text(body: str) -> str:
        body = body.replace(typo["text"], fixed)
        return (
            f"\nInterviewer: Earlier you said: {quoted['text']} Can you say more?\n\n"
            f"Participant: Aye. {quoted['text']}\n" + body
        )

    rerun_with_edit(project_location, tmp_path, edit_text, nlp, encoder, codebook, embedding_cache)
    with Store(project_location) as store:
        resolved = store.resolved_decisions().set_index("code_id")
        current = store.units().set_index("unit_id")
    kept = resolved.loc["ts.trust"]
    assert kept["anchor"] == "moved", kept["reason"]
    holder = current.loc[kept["current_unit_id"]]
    # The original passage, after the inserted exchange (its copies sit before it).
    copies = current[(current["transcript_id"] == "WP-02") & (current["text"] == quoted["text"])]
    assert len(copies) >= 2 and holder["start"] == copies["start"].max()
    waiting = resolved.loc["ts.time"]
    assert waiting["anchor"] == "orphaned" and waiting["reason"].startswith("moved — confirm")
    assert current.loc[waiting["candidate_unit_id"], "text"] == fixed
    runner = CliRunner()
    listed = runner.invoke(app, ["orphans", "--store", str(project_location)])
    assert "1 of 2 decisions are orphaned (1 moved — confirm)." in listed.output
    assert f"qcode orphans --confirm {waiting['decision_id']} --reviewer NAME" in listed.output
    where = ["--store", str(project_location)]
    confirm = ["orphans", "--confirm", str(waiting["decision_id"]), *where]
    nameless = runner.invoke(app, confirm)
    assert nameless.exit_code == 2 and "--confirm needs --reviewer" in nameless.output
    confirmed = runner.invoke(app, [*confirm, "--reviewer", "bea"])
    assert confirmed.exit_code == 0, confirmed.output
    with Store(project_location) as store:
        after = store.resolved_decisions().set_index("code_id")
    assert after.loc["ts.time", "anchor"] == "moved"
    assert after.loc["ts.time", "current_unit_id"] == waiting["candidate_unit_id"]
    again = runner.invoke(app, [*confirm, "--reviewer", "bea"])
    assert again.exit_code == 2 and "[E602]" in again.output


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
