"""Review sheets end to end: a real project store, real XLSX/CSV files edited like a reviewer."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.decisions import current_codings
from pipeline.interop.sheets import (
    ALREADY,
    BOOKKEEPING_COLUMNS,
    CODES_SHEET,
    COLUMNS,
    REVIEW_SHEET,
    SheetError,
    export_sheet,
    import_sheet,
    read_sheet,
)
from pipeline.store import NewDecision, Store
from tests.conftest import rerun_with_edit

runner = CliRunner()


# -- helpers: read and edit a sheet the way a reviewer's spreadsheet program would ------------


def load(path: Path) -> tuple[list[str], list[list[object]]]:
    """Header and data rows of an exported sheet."""
    if path.suffix == ".xlsx":
        sheet = openpyxl.load_workbook(path)[REVIEW_SHEET]
        grid = [list(r) for r in sheet.iter_rows(values_only=True)]
    else:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            grid = list(csv.reader(handle))
    return [str(h) for h in grid[0]], grid[1:]


def records(path: Path) -> list[dict[str, object]]:
    header, rows = load(path)
    return [dict(zip(header, r, strict=True)) for r in rows]


def edit(path: Path, changes: dict[str, dict[str, object]], append: list[dict] = ()) -> None:
    """Set cells by unit id ({unit_id: {column: value}}) and append rows, in place."""
    if path.suffix == ".xlsx":
        book = openpyxl.load_workbook(path)
        sheet = book[REVIEW_SHEET]
        header = [c.value for c in sheet[1]]
        for row in sheet.iter_rows(min_row=2):
            for column, value in changes.get(row[0].value, {}).items():
                row[header.index(column)].value = value
        for values in append:
            sheet.append([values.get(h) for h in header])
        book.save(path)
        return
    header, rows = load(path)
    for row in rows:
        for column, value in changes.get(row[0], {}).items():
            row[header.index(column)] = value
    rows += [[values.get(h, "") for h in header] for values in append]
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def row_of(path: Path, unit_id: str) -> int:
    """The sheet row number (header = 1) of a unit."""
    return [r["unit_id"] for r in records(path)].index(unit_id) + 2


def export(project_store: Path, out: Path, **options) -> Path:
    with Store(project_store) as store:
        export_sheet(store, out, **options)
    return out


def units_with_suggestions(path: Path, at_least: int) -> list[dict[str, object]]:
    return [r for r in records(path) if len(codes(r["suggested_codes"])) >= at_least]


def codes(cell: object) -> list[str]:
    return [c for c in str(cell or "").split(";") if c]


def n_decisions(project_store: Path) -> int:
    with Store(project_store) as store:
        return len(store.decisions())


# -- export -------------------------------------------------------------------------------------


def test_xlsx_export_is_ready_to_fill_in(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == [REVIEW_SHEET, CODES_SHEET]
    sheet = book[REVIEW_SHEET]
    header = [c.value for c in sheet[1]]
    assert header == COLUMNS
    assert sheet.freeze_panes == "A2"
    letter = {c: get_column_letter(i + 1) for i, c in enumerate(header)}
    hidden = {c for c in header if sheet.column_dimensions[letter[c]].hidden}
    assert hidden == set(BOOKKEEPING_COLUMNS)
    assert sheet.cell(2, header.index("text") + 1).alignment.wrap_text
    assert sheet.cell(2, header.index("context_before") + 1).alignment.wrap_text
    (validation,) = sheet.data_validations.dataValidation
    assert validation.formula1 == '"accept,reject,change"'
    assert str(validation.sqref) == f"{letter['decision']}2:{letter['decision']}{sheet.max_row}"
    codes_sheet = book[CODES_SHEET]
    assert [c.value for c in codes_sheet[1]] == ["code_id", "label", "kind", "definition"]
    assert codes_sheet.max_row == 1 + 29
    assert codes_sheet.cell(2, 1).value == "structure.focus_priorities"

    with Store(project_store) as store:
        units = store.units()
        suggestions = store.suggestions()
    codable = units[units["codable"]]
    rows = records(out)
    assert [r["unit_id"] for r in rows] == codable["unit_id"].tolist()  # reading order
    first = rows[0]
    assert first["version"] == 0 and first["decision"] is None
    unit = codable.iloc[0]
    assert first["text"] == unit["text"] and first["role"] == unit["role"]
    coded = next(r for r in rows if len(codes(r["suggested_codes"])) >= 2)
    expected = suggestions[suggestions["unit_id"] == coded["unit_id"]].sort_values("rank")
    assert codes(coded["suggested_codes"]) == expected["code_id"].tolist()
    assert coded["scores"] == ";".join(f"{s:.2f}" for s in expected["score"])
    assert coded["current_codes"] == coded["suggested_codes"]  # nobody has decided yet


def test_context_is_the_neighbouring_sentences(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    with Store(project_store) as store:
        units = store.units()
    rows = {r["unit_id"]: r for r in records(out)}
    ordered = units[units["transcript_id"] == "WP-01"].reset_index(drop=True)
    for i in range(1, len(ordered) - 1):
        unit = ordered.iloc[i]
        if not unit["codable"]:
            continue
        previous, following = ordered.iloc[i - 1], ordered.iloc[i + 1]
        row = rows[unit["unit_id"]]
        if previous["turn_index"] == unit["turn_index"]:
            assert row["context_before"].endswith(previous["text"])
        else:  # first sentence of a turn: the end of the previous turn, with its speaker
            assert row["context_before"] == f"{previous['speaker']}: {previous['text']}"
        if following["turn_index"] == unit["turn_index"]:
            assert row["context_after"].startswith(following["text"])
        else:
            assert row["context_after"] == f"{following['speaker']}: {following['text']}"


def test_sheet_carries_attributes_never_names(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    rows = records(out)
    assert {r["speaker"] for r in rows} <= {"Participant", "Interviewer", "P1", "P2", "P3"}
    content = out.read_text(encoding="utf-8-sig")
    # The raw Teams labels of wp05_lead_officer.vtt never reach the sheet.
    assert "Evaluator (University)" not in content and "WP-05 participant" not in content
    assert "network" not in load(out)[0]


def test_csv_export_has_a_bom_for_excel(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv", transcripts=["WP-07"])
    assert out.read_bytes().startswith(b"\xef\xbb\xbf" + b"unit_id,")
    rows = records(out)
    assert rows and {r["transcript_id"] for r in rows} == {"WP-07"}
    assert {r["speaker"] for r in rows} == {"P1", "P2", "P3"}


def test_export_filters_and_current_codes(project_store, tmp_path):
    everything = records(export(project_store, tmp_path / "all.csv"))
    target = next(r for r in everything if len(codes(r["suggested_codes"])) >= 2)
    dropped = codes(target["suggested_codes"])[0]
    with Store(project_store) as store:
        store.decide("bob", [NewDecision(target["unit_id"], dropped, "reject")])
        version = store.unit_version(target["unit_id"])
    after = {r["unit_id"]: r for r in records(export(project_store, tmp_path / "after.csv"))}
    assert codes(after[target["unit_id"]]["current_codes"]) == codes(target["suggested_codes"])[1:]
    assert int(after[target["unit_id"]]["version"]) == version > 0
    # Per code: one of its suggested codes decided leaves the unit partly reviewed, still to do.
    unreviewed = records(export(project_store, tmp_path / "todo.csv", unreviewed=True))
    assert target["unit_id"] in {r["unit_id"] for r in unreviewed}
    with Store(project_store) as store:
        rest = codes(target["suggested_codes"])[1:]
        store.decide("bob", [NewDecision(target["unit_id"], c, "accept") for c in rest])
    unreviewed = records(export(project_store, tmp_path / "todo2.csv", unreviewed=True))
    assert target["unit_id"] not in {r["unit_id"] for r in unreviewed}
    assert len(unreviewed) < len(everything)
    with Store(project_store) as store, pytest.raises(SheetError, match="no interview WP-99"):
        export_sheet(store, tmp_path / "x.xlsx", transcripts=["WP-99"])
    with Store(project_store) as store, pytest.raises(SheetError, match=r"\.xlsx or \.csv"):
        export_sheet(store, tmp_path / "x.ods")


# -- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_round_trip_records_each_kind_of_decision(project_store, tmp_path, suffix):
    out = export(project_store, tmp_path / f"review{suffix}")
    a, b, c = units_with_suggestions(out, 2)[:3]
    d = records(out)[0]
    c_codes = codes(c["suggested_codes"])
    added = "ts.trust" if "ts.trust" not in c_codes else "ts.time"
    edit(
        out,
        {
            a["unit_id"]: {"decision": "accept", "reviewer": "ann"},
            b["unit_id"]: {"decision": "Reject ", "memo": "procedural talk"},  # reviewer: default
            c["unit_id"]: {
                "decision": "change",
                "final_codes": f"{c_codes[0]}; {added}",
                "reviewer": "ann",
                "memo": "about trust",
            },
            d["unit_id"]: {"memo": "check this speaker's role", "reviewer": "ann"},
        },
    )
    with Store(project_store) as store:
        report = import_sheet(store, out, reviewer="bea")
        decisions = store.decisions()
        codings = current_codings(store.suggestions(), store.resolved_decisions())
    total = len(records(out))
    assert report.rows_read == total
    assert report.skipped_blank == total - 4
    assert report.units_decided == 4 and not report.conflicts
    assert report.decisions_written == len(decisions)
    assert set(decisions["source"]) == {"sheet"}

    def actions(unit: dict) -> list[tuple[str, str, str, str]]:
        mine = decisions[decisions["unit_id"] == unit["unit_id"]]
        return list(
            zip(mine["reviewer"], mine["code_id"], mine["action"], mine["memo"], strict=True)
        )

    assert actions(a) == [("ann", code, "accept", "") for code in codes(a["suggested_codes"])]
    assert actions(b) == [
        ("bea", code, "reject", "procedural talk") for code in codes(b["suggested_codes"])
    ]
    assert actions(c) == [
        ("ann", c_codes[0], "accept", "about trust"),
        *[("ann", code, "reject", "about trust") for code in c_codes[1:]],
        ("ann", added, "add", "about trust"),
    ]
    assert actions(d) == [("ann", "", "note", "check this speaker's role")]
    unit_c = codings[codings["unit_id"] == c["unit_id"]]
    assert set(unit_c.loc[unit_c["status"] == "accepted", "code_id"]) == {c_codes[0], added}
    assert "4 units decided" in report.summary()


def test_change_removes_codes_people_added_before(project_store, tmp_path):
    out = export(project_store, tmp_path / "first.xlsx")
    unit = units_with_suggestions(out, 1)[0]
    suggested = codes(unit["suggested_codes"])
    edit(out, {unit["unit_id"]: {"decision": "change", "final_codes": f"{suggested[0]};ts.time"}})
    with Store(project_store) as store:
        import_sheet(store, out, reviewer="ann")
    second = export(project_store, tmp_path / "second.xlsx")
    assert "ts.time" in codes(
        next(r for r in records(second) if r["unit_id"] == unit["unit_id"])["current_codes"]
    )
    edit(second, {unit["unit_id"]: {"decision": "change", "final_codes": suggested[0]}})
    with Store(project_store) as store:
        report = import_sheet(store, second, reviewer="ann")
        mine = store.decisions().query("unit_id == @unit['unit_id']")
    assert report.units_decided == 1 and not report.conflicts
    assert mine.iloc[-1][["code_id", "action"]].tolist() == ["ts.time", "remove"]


def test_accept_on_a_unit_without_suggestions_records_nothing(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    uncoded = next(r for r in records(out) if not r["suggested_codes"])
    edit(out, {uncoded["unit_id"]: {"decision": "accept", "reviewer": "ann"}})
    with Store(project_store) as store:
        report = import_sheet(store, out)
    assert report.nothing_to_record == [row_of(out, uncoded["unit_id"])]
    assert report.decisions_written == 0 and "nothing to record" in report.summary()


def test_renamed_code_in_final_codes_is_mapped(project_store, tmp_path, sample_transcripts):
    # A newer run whose codebook renamed ts.old_trust -> ts.trust.
    with Store(project_store) as store:
        book = store.codebook().model_copy(update={"renamed": {"ts.old_trust": "ts.trust"}})
        store.record_run(
            {"run_id": "renamed-run", "model": {}},
            sample_transcripts[0],
            store.units(),
            store.suggestions(),
            book,
        )
        assert store.codebook().renamed == {"ts.old_trust": "ts.trust"}
    out = export(project_store, tmp_path / "review.xlsx")
    unit = next(r for r in units_with_suggestions(out, 1) if "ts.trust" not in r["suggested_codes"])
    edit(out, {unit["unit_id"]: {"decision": "change", "final_codes": "ts.old_trust"}})
    with Store(project_store) as store:
        report = import_sheet(store, out, reviewer="ann")
        mine = store.decisions()
    assert report.units_decided == 1
    added = mine[mine["action"] == "add"]
    assert added["code_id"].tolist() == ["ts.trust"]


# -- validation ---------------------------------------------------------------------------------


def test_every_problem_is_reported_with_its_row_and_nothing_is_imported(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.xlsx")
    rows = units_with_suggestions(out, 1)
    good, unknown_unit, unknown_code, edited, duplicate, bad_word, no_final, no_reviewer = rows[:8]
    row_number = {r["unit_id"]: row_of(out, r["unit_id"]) for r in rows[:8]}
    edit(
        out,
        {
            good["unit_id"]: {"decision": "accept", "reviewer": "ann"},
            unknown_unit["unit_id"]: {
                "unit_id": "ffffffffffffffff",
                "decision": "accept",
                "reviewer": "ann",
            },
            unknown_code["unit_id"]: {
                "decision": "change",
                "final_codes": "ts.trust;ts.nonsense",
                "reviewer": "ann",
            },
            edited["unit_id"]: {"text": edited["text"] + " (sic)", "decision": "reject"},
            bad_word["unit_id"]: {"decision": "maybe", "reviewer": "ann"},
            no_final["unit_id"]: {"decision": "change", "reviewer": "ann"},
            no_reviewer["unit_id"]: {"decision": "accept"},
        },
        append=[{**duplicate, "decision": "accept", "reviewer": "ann"}],
    )
    last_row = len(records(out)) + 1
    with Store(project_store) as store, pytest.raises(SheetError) as caught:
        import_sheet(store, out)
    error = caught.value
    assert error.code == "E700" and str(out) in error.message
    assert "nothing was imported" in error.message
    # The edited-text row has no reviewer either: both are listed.
    expected = [
        (unknown_unit, "unknown unit id 'ffffffffffffffff'"),
        (unknown_code, "unknown code 'ts.nonsense' in final_codes"),
        (edited, f"the text of unit {edited['unit_id']} was edited"),
        (edited, "no reviewer"),
        (bad_word, "decision 'maybe' is not one of accept, reject, change"),
        (no_final, "decision is 'change' but final_codes is empty"),
        (no_reviewer, "no reviewer"),
    ]
    for unit, problem in expected:
        line = f"row {row_number[unit['unit_id']]}: {problem}"
        assert any(p.startswith(line) for p in error.problems), line
    first = row_number[duplicate["unit_id"]]
    assert f"row {last_row}: unit {duplicate['unit_id']} appears again (first at row {first})" in (
        error.message
    )
    assert len(error.problems) == len(expected) + 1
    assert n_decisions(project_store) == 0


def test_reviewer_default_and_long_error_lists_are_capped(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    rows = records(out)[:60]
    edit(out, {r["unit_id"]: {"decision": "nope"} for r in rows})
    with Store(project_store) as store, pytest.raises(SheetError) as caught:
        import_sheet(store, out, reviewer="ann")
    assert len(caught.value.problems) == 60
    assert "... and 10 more" in caught.value.message
    assert caught.value.message.count("\n  row ") == 50
    assert "no reviewer" not in caught.value.message  # --reviewer filled the blanks


def test_final_codes_without_change_and_bookkeeping_edits_are_errors(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    a, b, c = records(out)[:3]
    edit(
        out,
        {
            a["unit_id"]: {"decision": "accept", "final_codes": "ts.trust"},
            b["unit_id"]: {"decision": "accept", "text_sha256": "0" * 64},
            c["unit_id"]: {"decision": "accept", "version": "seven"},
        },
    )
    with Store(project_store) as store, pytest.raises(SheetError) as caught:
        import_sheet(store, out, reviewer="ann")
    assert caught.value.problems == [
        "row 2: final_codes is filled but decision is 'accept': final_codes is only read with "
        "'change'",
        f"row 3: text_sha256 does not match unit {b['unit_id']} (a hidden bookkeeping column was "
        "changed): export a new sheet",
        "row 4: version 'seven' is not a whole number (a hidden bookkeeping column: leave it as "
        "exported)",
    ]


# -- conflicts ----------------------------------------------------------------------------------


def test_unit_decided_since_export_is_a_conflict_and_others_import(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.xlsx")
    first, second = units_with_suggestions(out, 1)[:2]
    edit(
        out,
        {
            first["unit_id"]: {"decision": "reject", "reviewer": "ann"},
            second["unit_id"]: {"decision": "accept", "reviewer": "ann"},
        },
    )
    with Store(project_store) as store:
        code = codes(first["suggested_codes"])[0]
        store.decide("bob", [NewDecision(first["unit_id"], code, "accept")], source="web")
        report = import_sheet(store, out)
        decisions = store.decisions()
    (conflict,) = report.conflicts
    assert conflict.row == row_of(out, first["unit_id"]) and conflict.unit_id == first["unit_id"]
    assert ALREADY in conflict.reason and "bob (web," in conflict.reason
    # bob's decision stands; ann's row for that unit was not written; the other row was.
    on_first = decisions[decisions["unit_id"] == first["unit_id"]]
    assert on_first["reviewer"].tolist() == ["bob"]
    assert report.units_decided == 1
    assert set(decisions.loc[decisions["unit_id"] == second["unit_id"], "action"]) == {"accept"}
    summary = report.summary()
    assert "1 rows NOT imported" in summary and f"row {conflict.row}: unit" in summary


def test_importing_the_same_sheet_twice_does_not_double_apply(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    picked = units_with_suggestions(out, 1)[:3]
    edit(out, {r["unit_id"]: {"decision": "accept", "reviewer": "ann"} for r in picked})
    with Store(project_store) as store:
        first = import_sheet(store, out)
        written = len(store.decisions())
        second = import_sheet(store, out)
        assert len(store.decisions()) == written
    assert first.units_decided == 3 and not first.conflicts
    assert second.units_decided == 0 and second.decisions_written == 0
    assert [c.row for c in second.conflicts] == sorted(row_of(out, r["unit_id"]) for r in picked)
    assert all(ALREADY in c.reason and "ann (sheet," in c.reason for c in second.conflicts)
    assert ALREADY in second.summary()


def test_changed_suggestions_are_a_conflict(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv")
    unit = units_with_suggestions(out, 1)[0]
    edit(
        out,
        {unit["unit_id"]: {"decision": "accept", "reviewer": "ann", "suggested_codes": "ts.time"}},
    )
    with Store(project_store) as store:
        report = import_sheet(store, out)
    (conflict,) = report.conflicts
    assert "suggestions changed since the export" in conflict.reason
    assert n_decisions(project_store) == 0


# -- bad files ----------------------------------------------------------------------------------


def test_bad_files_are_clear_errors_and_leave_the_store_alone(project_store, tmp_path):
    not_xlsx = tmp_path / "notes.xlsx"
    not_xlsx.write_text("this is not a workbook")
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(COLUMNS) + "\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("unit_id,text,decision\nabc,Hello there,accept\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\xff\xfe" * 50)
    empty_book = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(empty_book)
    cases = {
        not_xlsx: "not an Excel workbook",
        empty_csv: "the sheet is empty",
        header_only: "no rows",
        missing: "row 1: missing column(s) final_codes, memo, reviewer, version, text_sha256",
        binary: "not a UTF-8 CSV",
        empty_book: "the sheet is empty",
        tmp_path / "review.ods": "must be .xlsx or .csv",
        tmp_path / "absent.xlsx": "no such file",
    }
    (tmp_path / "review.ods").write_text("x")
    for path, problem in cases.items():
        with Store(project_store) as store, pytest.raises(SheetError) as caught:
            import_sheet(store, path, reviewer="ann")
        assert caught.value.message.startswith(f"[E700] {path}: "), caught.value.message
        assert problem in caught.value.message, caught.value.message
    assert n_decisions(project_store) == 0


def test_semicolon_csv_from_excel_is_read(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv", transcripts=["WP-02"])
    header, rows = load(out)
    coded = next(r for r in rows if r[header.index("suggested_codes")])
    coded[header.index("decision")] = "reject"
    coded[header.index("reviewer")] = "ann"
    with out.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows([header, *rows])
    assert [r["decision"] for r in read_sheet(out) if r["decision"]] == ["reject"]
    with Store(project_store) as store:
        assert import_sheet(store, out).units_decided == 1


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_export_then_import(project_location, tmp_path):
    out = tmp_path / "review.xlsx"
    result = runner.invoke(
        app,
        ["export-sheet", str(out), "--store", str(project_location), "--transcript", "WP-01"],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"Wrote \d+ units from 1 interview", result.output)
    first, second = units_with_suggestions(out, 1)[:2]
    edit(out, {first["unit_id"]: {"decision": "accept"}, second["unit_id"]: {"decision": "reject"}})
    with Store(project_location) as store:  # someone decides on the second unit meanwhile
        code = codes(second["suggested_codes"])[0]
        store.decide("bob", [NewDecision(second["unit_id"], code, "accept")])
    result = runner.invoke(
        app, ["import-sheet", str(out), "--store", str(project_location), "--reviewer", "ann"]
    )
    assert result.exit_code == 0, result.output  # conflicts are listed, the rest is imported
    assert "1 units decided" in result.output
    assert "1 rows NOT imported" in result.output and ALREADY in result.output
    again = ["import-sheet", str(out), "--store", str(project_location), "--reviewer", "ann"]
    result = runner.invoke(app, again)
    assert result.exit_code == 0 and "2 rows NOT imported" in result.output


def test_cli_errors_are_messages(project_store, tmp_path):
    out = tmp_path / "review.csv"
    assert (
        runner.invoke(app, ["export-sheet", str(out), "--store", str(project_store)]).exit_code == 0
    )
    first = records(out)[0]
    edit(out, {first["unit_id"]: {"decision": "accept"}})
    result = runner.invoke(app, ["import-sheet", str(out), "--store", str(project_store)])
    assert result.exit_code == 2
    assert "[E700]" in result.output and "row 2: no reviewer" in result.output
    result = runner.invoke(app, ["export-sheet", str(out), "--store", str(tmp_path / "no.sqlite")])
    assert result.exit_code == 2 and "no project database" in result.output
    assert not (tmp_path / "no.sqlite").exists()
    for command in ("export-sheet", "import-sheet"):
        help_text = runner.invoke(app, [command, "--help"])
        assert help_text.exit_code == 0 and "Usage" in help_text.output


# -- sheets exported before an interview edit ---------------------------------------------------


def test_sheet_from_before_an_edit_imports_every_unchanged_unit(
    project_store, tmp_path, nlp, encoder, codebook, embedding_cache
):
    out = export(project_store, tmp_path / "review.xlsx", transcripts=["WP-02"])
    rows = units_with_suggestions(out, 1)
    moved, typo = rows[5], rows[8]
    assert moved["text"] != typo["text"] and " " in typo["text"]
    edit(
        out,
        {
            moved["unit_id"]: {"decision": "accept", "reviewer": "ann"},
            typo["unit_id"]: {"decision": "reject", "reviewer": "ann"},
        },
    )
    words = typo["text"].split(" ")
    middle = len(words) // 2
    fixed = " ".join([*words[:middle], words[middle] + "x", *words[middle + 1 :]])  # one word
    assert fixed != typo["text"]

    def edit_text(body: str) -> str:
        body = body.replace(typo["text"], fixed)
        return "\nInterviewer: A question added in the edit, before everything else?\n" + body

    rerun_with_edit(project_store, tmp_path, edit_text, nlp, encoder, codebook, embedding_cache)
    with Store(project_store) as store:
        assert moved["unit_id"] not in set(store.units()["unit_id"])  # every unit moved
        report = import_sheet(store, out)
        units = store.units().set_index("unit_id")
        decisions = store.decisions()
    # The moved unit's decision is on the unit that now holds its text.
    assert report.units_decided == 1 and report.moved == 1
    (target,) = set(decisions["unit_id"])
    assert units.loc[target, "text"] == moved["text"]
    assert set(decisions["action"]) == {"accept"}
    # The edited sentence is a conflict showing both texts; untouched rows are no problem.
    (conflict,) = report.conflicts
    assert conflict.row == row_of(out, typo["unit_id"])
    assert conflict.sheet_text == typo["text"] and fixed in conflict.now_text
    assert report.skipped_blank == len(records(out)) - 2  # blank rows are no problem
    assert not report.deleted_codes and not report.deleted_rows
    summary = report.summary()
    assert f'in the sheet: "{typo["text"]}"' in summary
    assert f'now:          "{conflict.now_text}"' in summary


# -- double coding: one sheet per reviewer -------------------------------------------------------


def test_per_reviewer_sheets_do_not_conflict_with_each_other(project_store, tmp_path):
    sheets = {}
    for name in ("ann", "bob"):
        sheets[name] = export(
            project_store, tmp_path / f"{name}.xlsx", transcripts=["WP-04"], reviewer=name
        )
        assert {r["reviewer"] for r in records(sheets[name])} == {name}
        assert {r["sheet_reviewer"] for r in records(sheets[name])} == {name}
    picked = units_with_suggestions(sheets["ann"], 1)[:20]
    assert len(picked) == 20
    edit(sheets["ann"], {r["unit_id"]: {"decision": "accept"} for r in picked})
    edit(sheets["bob"], {r["unit_id"]: {"decision": "reject"} for r in picked})
    with Store(project_store) as store:
        first = import_sheet(store, sheets["ann"])
        second = import_sheet(store, sheets["bob"])
        again = import_sheet(store, sheets["bob"])
        decisions = store.decisions()
    assert first.units_decided == second.units_decided == 20
    assert not first.conflicts and not second.conflicts
    assert "for bob alone" in second.summary()
    # Each keeps their own decisions: both reviewers are there for agreement.
    for name, action in (("ann", "accept"), ("bob", "reject")):
        mine = decisions[decisions["reviewer"] == name]
        assert set(mine["action"]) == {action} and mine["unit_id"].nunique() == 20
    # A reviewer's own sheet imported twice still conflicts with their own decisions.
    assert again.units_decided == 0 and len(again.conflicts) == 20
    assert all("bob (sheet," in c.reason for c in again.conflicts)
    # A later per-reviewer export shows only that reviewer's state (blind).
    later = {
        r["unit_id"]: r
        for r in records(
            export(project_store, tmp_path / "b2.csv", transcripts=["WP-04"], reviewer="bob")
        )
    }
    assert all(later[r["unit_id"]]["current_codes"] == "" for r in picked)


def test_someone_elses_name_in_a_per_reviewer_sheet_is_refused(project_store, tmp_path):
    out = export(project_store, tmp_path / "ann.csv", transcripts=["WP-04"], reviewer="ann")
    first = units_with_suggestions(out, 1)[0]
    edit(out, {first["unit_id"]: {"decision": "accept", "reviewer": "bob"}})
    with Store(project_store) as store, pytest.raises(SheetError) as caught:
        import_sheet(store, out)
    assert "reviewer 'bob' in a sheet exported for ann" in caught.value.message
    assert n_decisions(project_store) == 0


# -- deletions are reported, never skipped silently ----------------------------------------------


def test_deleted_codes_and_deleted_rows_are_reported(project_store, tmp_path):
    out = export(project_store, tmp_path / "review.csv", transcripts=["WP-02"])
    rows = records(out)
    coded = units_with_suggestions(out, 2)
    blank_cut, decided_cut = coded[0], coded[1]
    edit(
        out,
        {
            blank_cut["unit_id"]: {"suggested_codes": codes(blank_cut["suggested_codes"])[0]},
            decided_cut["unit_id"]: {
                "suggested_codes": codes(decided_cut["suggested_codes"])[0],
                "decision": "accept",
                "reviewer": "ann",
            },
        },
    )
    header, grid = load(out)
    gone = [grid[3], grid[-1]]  # two rows deleted, the last one included
    kept = [r for r in grid if r not in gone]
    with out.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([header, *kept])
    with Store(project_store) as store:
        report = import_sheet(store, out)
    assert [c.unit_id for c in report.deleted_codes] == [
        blank_cut["unit_id"],
        decided_cut["unit_id"],
    ]
    assert report.deleted_rows == [
        f"exported row 4 of {len(rows)}",
        f"exported row {len(rows)} of {len(rows)}",
    ]
    assert report.decisions_written == 0 and n_decisions(project_store) == 0
    summary = report.summary()
    assert "2 rows NOT imported: codes were deleted from suggested_codes" in summary
    assert "2 exported rows are missing from the sheet" in summary
