"""Review sheets: export a run's units with the machine's codes; import people's decisions.

Many reviewers work in Excel, offline, and pass files around. The sheet therefore carries two
hidden bookkeeping columns so that an import can tell a reviewer's judgement from a stale one:
``version`` (the unit's ``Store.unit_version`` at export) and ``text_sha256`` (of the unit text).

* Every row is validated before anything is written. Any problem -> nothing is imported and one
  ``SheetError`` lists every problem by the sheet's row number (the header is row 1).
* A unit decided in the store since the export is a conflict: reported, never overwritten. The
  other rows are imported, one ``Store.decide`` transaction per unit, so a decision that races the
  import is caught by the same version check.
* Importing a sheet twice writes nothing the second time: every decided row is then a conflict.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.codebook import Codebook
from pipeline.decisions import (
    CONFIRM,
    current_codings,
    project_decisions,
    resolve_anchors,
    resolve_code,
    reviewed_units,
    text_sha,
)
from pipeline.errors import QcodeError
from pipeline.interop import listed
from pipeline.store import NewDecision, StaleUnitError, Store, read_frame
from pipeline.store_pg import is_url

INFO_COLUMNS = [
    "unit_id",
    "transcript_id",
    "speaker",
    "role",
    "local_authority",
    "workstream",
    "context_before",
    "text",
    "context_after",
    "suggested_codes",
    "scores",
    "current_codes",
]
DECISION_COLUMNS = ["decision", "final_codes", "memo", "reviewer"]
# ``sheet_reviewer``: the reviewer a per-reviewer sheet was exported for (blank: a shared
# sheet); ``export_row``: "k of N", the row's place in the export, so deleted rows are reported.
BOOKKEEPING_COLUMNS = ["version", "text_sha256", "sheet_reviewer", "export_row"]
COLUMNS = [*INFO_COLUMNS, *DECISION_COLUMNS, *BOOKKEEPING_COLUMNS]
# Columns an import cannot do without; the others are there for the reader and may be deleted.
# (sheet_reviewer and export_row are newer: sheets exported before them still import.)
REQUIRED_COLUMNS = ["unit_id", "text", *DECISION_COLUMNS, "version", "text_sha256"]
DECISION_WORDS = ("accept", "reject", "change")
SUFFIXES = (".xlsx", ".csv")
REVIEW_SHEET = "review"
CODES_SHEET = "codes"
CONTEXT_SENTENCES = 2  # neighbouring sentences of the same turn shown either side
CONTEXT_MAX_CHARS = 400
MAX_LISTED = 50  # problems listed in one error message
ALREADY = "already imported or changed since export"
# Characters XML (so XLSX) cannot hold; the same pattern openpyxl refuses.
_ILLEGAL = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
_CODE_SPLIT = re.compile(r"[;,\s]+")
_WHOLE_NUMBER = re.compile(r"^\d+(\.0*)?$")
_EXPORT_ROW = re.compile(r"^(\d+) of (\d+)$")  # not "k/N": Excel reads that as a date
_WIDTHS = {
    "unit_id": 18,
    "transcript_id": 12,
    "speaker": 12,
    "role": 16,
    "local_authority": 10,
    "workstream": 10,
    "context_before": 40,
    "text": 60,
    "context_after": 40,
    "suggested_codes": 30,
    "scores": 12,
    "current_codes": 30,
    "decision": 11,
    "final_codes": 30,
    "memo": 30,
    "reviewer": 12,
}
_WRAPPED = ("context_before", "text", "context_after", "memo")


class SheetError(QcodeError):
    """A review sheet cannot be exported or imported; the store was left untouched."""

    code = "E700"
    fix = (
        "Fix the rows listed (every row is checked before anything is written) and import the "
        "sheet again; for conflicts, export a fresh sheet."
    )

    def __init__(
        self,
        problem: str,
        path: str | Path | None = None,
        line: int | None = None,
        problems: Sequence[str] = (),
    ):
        self.problems = list(problems)
        super().__init__(problem, path, line)


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, for the CLI to say so."""

    path: Path
    rows: int
    transcripts: tuple[str, ...]
    unreviewed_only: bool
    reviewer: str = ""

    def summary(self) -> str:
        which = "unreviewed units" if self.unreviewed_only else "units"
        who = (
            f" for {self.reviewer} alone (independent coding: other reviewers' decisions are "
            "not shown and do not conflict)"
            if self.reviewer
            else ""
        )
        return (
            f"Wrote {self.rows} {which} from {len(self.transcripts)} interview(s) to {self.path}"
            f"{who}.\n"
            "Fill in decision (accept / reject / change), final_codes (for change), memo and "
            f"reviewer, then run: qcode import-sheet {self.path}"
        )


def open_store(path: str | Path) -> Store:
    """Open an existing project store: a wrong path is an error, not a new empty project."""
    if is_url(path):
        return Store(str(path))
    path = Path(path)
    if not path.is_file():
        raise SheetError("no project database here: run 'qcode run' first, or pass --store", path)
    return Store(path)


@contextmanager
def _snapshot(store: Store) -> Iterator[None]:
    """One read transaction, so codes and versions in a sheet come from the same moment."""
    store.db.execute("BEGIN")
    try:
        yield
    finally:
        store.db.execute("ROLLBACK")


def _clip(text: str, keep_end: bool) -> str:
    if len(text) <= CONTEXT_MAX_CHARS:
        return text
    if keep_end:
        return "… " + text[-CONTEXT_MAX_CHARS:].split(" ", 1)[-1]
    return text[:CONTEXT_MAX_CHARS].rsplit(" ", 1)[0] + " …"


def unit_contexts(units: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """unit_id -> text before and after it: up to CONTEXT_SENTENCES sentences of the same turn,
    or, at a turn's edge, the neighbouring turn's nearest sentence labelled with its speaker."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    ordered = units.sort_values(["transcript_id", "start"])
    for _, frame in ordered.groupby("transcript_id", sort=False):
        rows = list(
            zip(frame["unit_id"], frame["turn_index"], frame["speaker"], frame["text"], strict=True)
        )
        for i, (uid, turn, _speaker, _text) in enumerate(rows):
            earlier = [r[3] for r in rows[max(0, i - CONTEXT_SENTENCES) : i] if r[1] == turn]
            later = [r[3] for r in rows[i + 1 : i + 1 + CONTEXT_SENTENCES] if r[1] == turn]
            if earlier:
                before[uid] = " ".join(earlier)
            elif i > 0:
                before[uid] = f"{rows[i - 1][2]}: {rows[i - 1][3]}"
            else:
                before[uid] = ""
            if later:
                after[uid] = " ".join(later)
            elif i + 1 < len(rows):
                after[uid] = f"{rows[i + 1][2]}: {rows[i + 1][3]}"
            else:
                after[uid] = ""
            before[uid] = _clip(before[uid], keep_end=True)
            after[uid] = _clip(after[uid], keep_end=False)
    return before, after


def _ranked(codes: pd.DataFrame) -> dict[str, list[str]]:
    """unit_id -> code ids in rank order (unranked codes last, by id)."""
    if codes.empty:
        return {}
    ordered = codes.assign(_rank=codes["rank"].fillna(10**6)).sort_values(
        ["unit_id", "_rank", "code_id"]
    )
    return {u: list(g["code_id"]) for u, g in ordered.groupby("unit_id", sort=False)}


def review_frame(
    store: Store,
    transcripts: Sequence[str] | None = None,
    unreviewed: bool = False,
    reviewer: str | None = None,
) -> tuple[pd.DataFrame, Codebook]:
    """The review sheet's rows (COLUMNS) for the codable units of the latest run.

    With ``reviewer``, a per-reviewer sheet for independent (double) coding: current codes,
    "unreviewed" and versions count that reviewer's decisions only."""
    reviewer = (reviewer or "").strip() or None
    with _snapshot(store):
        run_id = store.latest_run_id()
        if run_id is None:
            raise SheetError("the project has no runs yet: run 'qcode run' first", store.path)
        codebook = store.codebook(run_id)
        units = store.units(run_id)
        suggestions = store.suggestions(run_id)
        resolved = store.resolved_decisions(codebook)
        codings = current_codings(suggestions, resolved, reviewer)
        rows = units[units["codable"]]
        if transcripts:
            unknown = sorted(set(transcripts) - set(units["transcript_id"]))
            if unknown:
                known = ", ".join(sorted(set(units["transcript_id"])))
                raise SheetError(
                    f"no interview {', '.join(unknown)} in the latest run (it has: {known})",
                    store.path,
                )
            rows = rows[rows["transcript_id"].isin(transcripts)]
        if unreviewed:
            # The one definition of "reviewed" (per code): partly reviewed units stay in.
            mine = resolved if reviewer is not None else project_decisions(resolved)
            done = reviewed_units(units, suggestions, mine, reviewer)
            rows = rows[~rows["unit_id"].isin(done)]
        versions = [store.unit_version(u, reviewer) for u in rows["unit_id"]]
    before, after = unit_contexts(units)
    suggested = _ranked(suggestions)
    scores = {
        (u, c): s for u, c, s in suggestions[["unit_id", "code_id", "score"]].itertuples(False)
    }
    current = _ranked(codings[codings["status"] != "rejected"])
    frame = pd.DataFrame(
        {
            "unit_id": rows["unit_id"],
            "transcript_id": rows["transcript_id"],
            "speaker": rows["speaker"],
            "role": rows["role"].fillna(""),
            "local_authority": rows["local_authority"].fillna(""),
            "workstream": rows["workstream"].fillna(""),
            "context_before": [before[u] for u in rows["unit_id"]],
            "text": rows["text"],
            "context_after": [after[u] for u in rows["unit_id"]],
            "suggested_codes": [";".join(suggested.get(u, [])) for u in rows["unit_id"]],
            "scores": [
                ";".join(f"{scores[u, c]:.2f}" for c in suggested.get(u, []))
                for u in rows["unit_id"]
            ],
            "current_codes": [";".join(current.get(u, [])) for u in rows["unit_id"]],
            **{column: "" for column in DECISION_COLUMNS},
            "version": versions,
            "text_sha256": [text_sha(t) for t in rows["text"]],
            "sheet_reviewer": reviewer or "",
            "export_row": [f"{i} of {len(rows)}" for i in range(1, len(rows) + 1)],
        }
    )
    if reviewer:
        frame["reviewer"] = reviewer
    return frame[COLUMNS].reset_index(drop=True), codebook


def export_sheet(
    store: Store,
    out: str | Path,
    transcripts: Sequence[str] | None = None,
    unreviewed: bool = False,
    reviewer: str | None = None,
) -> ExportResult:
    """Write the review sheet (.xlsx or .csv, by suffix) all at once: no half-written file.

    ``reviewer``: a per-reviewer sheet (see ``review_frame``)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise SheetError("a review sheet must be .xlsx or .csv", out)
    frame, codebook = review_frame(store, transcripts, unreviewed, reviewer)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{suffix}")
    try:
        if suffix == ".xlsx":
            _write_xlsx(frame, codebook, partial)
        else:
            _write_csv(frame, partial)
        partial.replace(out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise SheetError(f"cannot write the sheet ({error.strerror or error})", out) from None
    return ExportResult(
        out,
        len(frame),
        tuple(sorted(set(frame["transcript_id"]))),
        unreviewed_only=unreviewed,
        reviewer=(reviewer or "").strip(),
    )


def _cell_text(value: str) -> str:
    """Text as a sheet cell can hold it (XML refuses some control characters)."""
    return _ILLEGAL.sub("\ufffd", value)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    # UTF-8 with a BOM: Excel then reads accents and curly quotes right.
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in frame.itertuples(index=False):
            writer.writerow([_cell_text(v) if isinstance(v, str) else v for v in row])


def _write_xlsx(frame: pd.DataFrame, codebook: Codebook, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    sheet.title = REVIEW_SHEET
    letters = {c: get_column_letter(i) for i, c in enumerate(COLUMNS, start=1)}
    wrap = Alignment(wrap_text=True, vertical="top")
    top = Alignment(vertical="top")
    sheet.append(COLUMNS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for r, row in enumerate(frame.itertuples(index=False), start=2):
        for c, (column, value) in enumerate(zip(COLUMNS, row, strict=True), start=1):
            cell = sheet.cell(r, c, _cell_text(value) if isinstance(value, str) else int(value))
            if isinstance(value, str) and value.startswith("="):
                cell.data_type = "s"  # a sentence, not a formula
            cell.alignment = wrap if column in _WRAPPED else top
    last_row = max(len(frame) + 1, 2)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{letters[COLUMNS[-1]]}{last_row}"
    for column, width in _WIDTHS.items():
        sheet.column_dimensions[letters[column]].width = width
    for column in BOOKKEEPING_COLUMNS:
        sheet.column_dimensions[letters[column]].hidden = True
    choices = DataValidation(
        type="list",
        formula1='"' + ",".join(DECISION_WORDS) + '"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="decision",
        error="Choose accept, reject or change, or leave it blank (no decision).",
    )
    choices.add(f"{letters['decision']}2:{letters['decision']}{last_row}")
    sheet.add_data_validation(choices)

    codes = book.create_sheet(CODES_SHEET)
    codes.append(["code_id", "label", "kind", "definition"])
    for cell in codes[1]:
        cell.font = Font(bold=True)
    for code in codebook.codes:
        codes.append([code.id, code.label, code.kind, code.definition])
    for row in codes.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = wrap
    codes.freeze_panes = "A2"
    for letter, width in zip("ABCD", (32, 40, 10, 90), strict=True):
        codes.column_dimensions[letter].width = width
    book.save(path)


# -- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """A row not imported because its unit changed in the store since the export."""

    row: int
    unit_id: str
    reason: str
    sheet_text: str = ""  # for a unit whose interview was edited: the text as exported ...
    now_text: str = ""  # ... and what the interview says there now ("" if nothing)

    def __str__(self) -> str:
        line = f"row {self.row}: unit {self.unit_id}: {self.reason}"
        if self.sheet_text:
            line += f'\n      in the sheet: "{self.sheet_text}"\n      now:          ' + (
                f'"{self.now_text}"' if self.now_text else "(no longer in the interview)"
            )
        return line


@dataclass
class ImportReport:
    """What an import did; ``summary()`` is what the CLI prints."""

    path: Path
    rows_read: int = 0
    units_decided: int = 0
    decisions_written: int = 0
    skipped_blank: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    nothing_to_record: list[int] = field(default_factory=list)  # rows: accept/reject, no codes
    moved: int = 0  # decided rows whose text moved in an edited interview, imported there
    blank_changed: int = 0  # blank rows whose unit changed since the export (nothing to do)
    deleted_codes: list[Conflict] = field(default_factory=list)
    deleted_rows: list[str] = field(default_factory=list)
    sheet_reviewer: str = ""

    def summary(self) -> str:
        lines = [
            f"Imported {self.path}: {self.rows_read} rows read, {self.units_decided} units "
            f"decided ({self.decisions_written} decisions written), {self.skipped_blank} blank "
            "rows skipped."
        ]
        if self.moved:
            lines.append(
                f"{self.moved} decided rows are units whose interview was edited since the "
                "export; their text is unchanged and was found again, so they were imported there."
            )
        if self.blank_changed:
            lines.append(
                f"{self.blank_changed} of the blank rows are units changed since the export "
                "(nothing to import for them)."
            )
        if self.sheet_reviewer:
            lines.append(
                f"A sheet for {self.sheet_reviewer} alone: other reviewers' decisions were not "
                "conflicts (independent coding)."
            )
        if self.deleted_codes:
            lines.append(
                f"{len(self.deleted_codes)} rows NOT imported: codes were deleted from "
                "suggested_codes. Deleting a code records nothing; to reject it, write change "
                "and list the codes to keep in final_codes (or reject for none):"
            )
            lines += listed(self.deleted_codes, MAX_LISTED)
        if self.deleted_rows:
            lines.append(
                f"{len(self.deleted_rows)} exported rows are missing from the sheet (deleted?); "
                "nothing was recorded for them and their units' decisions are unchanged:"
            )
            lines += listed(self.deleted_rows, MAX_LISTED)
        if self.nothing_to_record:
            rows = ", ".join(str(r) for r in self.nothing_to_record[:MAX_LISTED])
            more = len(self.nothing_to_record) - MAX_LISTED
            lines.append(
                f"{len(self.nothing_to_record)} rows accept or reject a unit with no suggested "
                "codes: nothing to record, the unit stays uncoded (use change to add codes): "
                f"rows {rows}" + (f" and {more} more" if more > 0 else "")
            )
        if self.conflicts:
            lines.append(
                f"{len(self.conflicts)} rows NOT imported (conflicts: the unit changed in the "
                "project since the export; nothing was overwritten; export again to review them):"
            )
            lines += listed(self.conflicts, MAX_LISTED)
        return "\n".join(lines)


@dataclass(frozen=True)
class SheetRow:
    """One data row as read, every value a string (blank cells are "")."""

    row: int
    values: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values.get(column, "")


@dataclass(frozen=True)
class _Plan:
    row: int
    unit_id: str
    reviewer: str
    version: int
    decisions: list[NewDecision]
    sheet_suggested: frozenset[str] | None
    moved_from: str = ""  # the exported unit id, when the text moved to ``unit_id``


@dataclass
class _Checked:
    """What checking the rows found: writes, problems and what is only reported."""

    plans: list[_Plan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    blank: int = 0
    nothing: list[int] = field(default_factory=list)
    changed: list[Conflict] = field(default_factory=list)
    blank_changed: int = 0
    deleted_codes: list[Conflict] = field(default_factory=list)
    deleted_rows: list[str] = field(default_factory=list)
    sheet_reviewer: str = ""


def _old_units(store: Store, unit_ids: list[str]) -> pd.DataFrame:
    """Units of earlier runs (the store keeps them), for rows exported before an edit."""
    if not unit_ids:
        return pd.DataFrame(columns=["unit_id", "transcript_id", "start", "end", "text"])
    marks = ", ".join("?" * len(unit_ids))
    return read_frame(
        f'SELECT unit_id, transcript_id, start, "end", text FROM units WHERE unit_id IN ({marks})',
        store.db,
        params=tuple(unit_ids),
    )


def _follow(store: Store, old: pd.DataFrame, units: pd.DataFrame, codebook: Codebook) -> dict:
    """Exported unit id -> (current unit id or None, its current text): where each changed
    unit's exact text is now, by the same anchoring that decisions follow."""
    if old.empty:
        return {}
    probe = old.assign(code_id="")
    anchored = resolve_anchors(
        probe, units, store.transcript_texts(), codebook, store.earlier_units(store.latest_run_id())
    )
    texts = dict(zip(units["unit_id"], units["text"], strict=True))
    out = {}
    for row in anchored.itertuples(index=False):
        holder = row.current_unit_id if row.anchor == "moved" else None
        unsure = str(row.reason).startswith(CONFIRM) and "appears" in str(row.reason)
        out[row.unit_id] = (holder, texts.get(holder, "") if holder else "", unsure)
    return out


def _value(value: object) -> str:
    """A cell as text: Excel turns typed numbers into floats, blanks into None."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def read_grid(
    path: Path,
    error: type[QcodeError] = SheetError,
    sheet_name: str = REVIEW_SHEET,
    what: str = "a review sheet",
) -> list[list[object]]:
    """All rows of a sheet (``sheet_name`` or the first), header first, as the file holds them;
    unreadable files raise ``error``. Used for review sheets and spreadsheet codebooks."""
    if not path.is_file():
        raise error("no such file", path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, data_only=True)
        except Exception as problem:  # openpyxl raises many kinds for a file that is not XLSX
            raise error(
                f"not an Excel workbook ({type(problem).__name__}): save it as .xlsx or .csv", path
            ) from None
        if not book.worksheets:
            raise error("the workbook has no worksheets", path)
        sheet = book[sheet_name] if sheet_name in book.sheetnames else book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(min_row=1, values_only=True)]
    if suffix == ".csv":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise error(
                "not a UTF-8 CSV file: save it as 'CSV UTF-8' (or use the .xlsx)", path
            ) from None
        except OSError as problem:
            raise error(f"cannot read it ({problem.strerror or problem})", path) from None
        if "\x00" in text:
            raise error("not a CSV text file (it holds binary data)", path)
        header = text.split("\n", 1)[0]
        delimiter = max(",;\t", key=header.count)  # Excel in some locales saves with ';'
        try:
            return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error as problem:
            raise error(f"not a readable CSV file ({problem})", path) from None
    raise error(f"{what} must be .xlsx or .csv", path)


def read_sheet(path: str | Path) -> list[SheetRow]:
    """The data rows of a review sheet, numbered as the sheet shows them (header = row 1)."""
    path = Path(path)
    grid = read_grid(path)
    while grid and not any(_value(v).strip() for v in grid[-1]):
        grid.pop()
    if not grid:
        raise SheetError("the sheet is empty: export one with 'qcode export-sheet'", path)
    header = [_value(v).strip().lower() for v in grid[0]]
    repeated = sorted({h for h in header if h in COLUMNS and header.count(h) > 1})
    if repeated:
        raise SheetError(f"row 1: column(s) {', '.join(repeated)} appear more than once", path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SheetError(
            f"row 1: missing column(s) {', '.join(missing)}; the first row must be the header of "
            "a sheet written by 'qcode export-sheet' (keep its hidden columns)",
            path,
        )
    rows = []
    for number, cells in enumerate(grid[1:], start=2):
        values = {h: _value(v) for h, v in zip(header, cells, strict=False) if h in COLUMNS}
        if any(v.strip() for v in values.values()):
            rows.append(SheetRow(number, values))
    if not rows:
        raise SheetError("the sheet has a header but no rows", path)
    return rows


def _codes(cell: str) -> list[str]:
    return [c for c in _CODE_SPLIT.split(cell.strip()) if c]


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sheet_reviewer(rows: list[SheetRow], path: Path) -> str:
    """The reviewer a per-reviewer sheet was exported for ("" for a shared sheet)."""
    names = {r["sheet_reviewer"].strip() for r in rows}
    if len(names) > 1:
        listed_names = ", ".join(sorted(n or "(blank)" for n in names))
        raise SheetError(
            f"the hidden sheet_reviewer column holds several names ({listed_names}): rows from "
            "different reviewers' sheets were pasted together; import each sheet on its own",
            path,
        )
    return names.pop() if names else ""


def _plan_rows(
    rows: list[SheetRow],
    store: Store,
    codebook: Codebook,
    default_reviewer: str | None,
    sheet_reviewer: str = "",
) -> _Checked:
    """Check every row; return the writes, the problems and what is only reported."""
    checked = _Checked(sheet_reviewer=sheet_reviewer)
    units = store.units()
    texts = dict(zip(units["unit_id"], units["text"], strict=True))
    in_project = {r[0] for r in store.db.execute("SELECT unit_id FROM units")}
    suggestions = store.suggestions()
    suggested = _ranked(suggestions)
    codings = current_codings(
        suggestions, store.resolved_decisions(codebook), sheet_reviewer or None
    )
    accepted = codings[codings["status"] == "accepted"]
    people_added = {
        u: set(g["code_id"]) - set(suggested.get(u, [])) for u, g in accepted.groupby("unit_id")
    }
    gone = [
        r["unit_id"].strip()
        for r in rows
        if r["unit_id"].strip() in in_project and r["unit_id"].strip() not in texts
    ]
    old = _old_units(store, sorted(set(gone)))
    old_texts = dict(zip(old["unit_id"], old["text"], strict=True))
    followed = _follow(store, old, units, codebook)
    first_row: dict[str, int] = {}
    seen_export_rows: set[int] = set()
    exported_rows = 0
    for row in rows:
        found: list[str] = []
        unit_id = row["unit_id"].strip()
        decision = row["decision"].strip().lower()
        final_raw = _codes(row["final_codes"])
        memo = row["memo"].strip()
        reviewer = row["reviewer"].strip() or (default_reviewer or "").strip()
        if sheet_reviewer and not row["reviewer"].strip():
            reviewer = sheet_reviewer
        has_content = bool(decision or final_raw or memo)
        known = changed = False
        place = _EXPORT_ROW.match(row["export_row"].strip())
        if place:
            seen_export_rows.add(int(place.group(1)))
            exported_rows = max(exported_rows, int(place.group(2)))
        if not unit_id:
            found.append("no unit_id (keep the exported unit_id of every row)")
        elif unit_id in first_row:
            found.append(
                f"unit {unit_id} appears again (first at row {first_row[unit_id]}): keep one "
                "row per unit"
            )
        elif unit_id in old_texts:
            changed = True
        elif unit_id not in texts:
            found.append(
                f"unknown unit id '{unit_id}': not in this project (a sheet from another "
                "project, or an edited unit_id?)"
            )
        else:
            known = True
        if unit_id and unit_id not in first_row:
            first_row[unit_id] = row.row
        exported_text = texts.get(unit_id) if known else old_texts.get(unit_id)
        if exported_text is not None:
            if _normal(row["text"]) != _cell_text(exported_text):
                found.append(
                    f"the text of unit {unit_id} was edited: leave text as exported and write "
                    "comments in memo"
                )
            elif row["text_sha256"].strip() != text_sha(exported_text):
                found.append(
                    f"text_sha256 does not match unit {unit_id} (a hidden bookkeeping column "
                    "was changed): export a new sheet"
                )
        version_cell = row["version"].strip()
        if not _WHOLE_NUMBER.match(version_cell):
            found.append(
                (
                    f"version '{version_cell}' is not a whole number"
                    if version_cell
                    else "no version"
                )
                + " (a hidden bookkeeping column: leave it as exported)"
            )
        if decision and decision not in DECISION_WORDS:
            found.append(
                f"decision '{row['decision'].strip()}' is not one of accept, reject, change "
                "(or blank for no decision)"
            )
        final: list[str] = []
        for code in final_raw:
            current = resolve_code(code, codebook)
            if current is None:
                found.append(f"unknown code '{code}' in final_codes (see the codes sheet)")
            elif current not in final:
                final.append(current)
        if decision == "change" and not final_raw:
            found.append(
                "decision is 'change' but final_codes is empty: list every code the unit should "
                "have, or use reject"
            )
        if final_raw and decision != "change":
            found.append(
                "final_codes is filled but decision is "
                + (f"'{decision}'" if decision else "blank")
                + ": final_codes is only read with 'change'"
            )
        if has_content and not reviewer:
            found.append("no reviewer: fill the reviewer column or pass --reviewer NAME")
        if sheet_reviewer and reviewer != sheet_reviewer:
            found.append(
                f"reviewer '{reviewer}' in a sheet exported for {sheet_reviewer}: each reviewer "
                "fills their own sheet (qcode export-sheet --reviewer NAME)"
            )
        checked.problems += [f"row {row.row}: {p}" for p in found]
        if found:
            continue
        moved_from = ""
        if changed:
            holder, now_text, unsure = followed.get(unit_id, (None, "", False))
            if holder is None or now_text != old_texts[unit_id]:
                if has_content:
                    checked.changed.append(
                        Conflict(
                            row.row,
                            unit_id,
                            (
                                "the interview was edited since the export and this text now "
                                "appears in more than one place; not imported (decide on the "
                                "passage you mean on the review page)"
                                if unsure
                                else "the interview was edited since the export and this text "
                                "is not there any more; not imported (decide on the new text "
                                "in a new sheet or on the review page)"
                            ),
                            sheet_text=old_texts[unit_id],
                            now_text=_now_text(old, unit_id, units, texts),
                        )
                    )
                else:
                    checked.blank_changed += 1
                    checked.blank += 1
                continue
            moved_from, unit_id = unit_id, holder
        sheet_suggested = None
        if "suggested_codes" in row.values:
            sheet_suggested = frozenset(
                resolve_code(c, codebook) or c for c in _codes(row["suggested_codes"])
            )
        machine = suggested.get(unit_id, [])
        exported_scores = len(_codes(row["scores"])) if "scores" in row.values else None
        if (
            sheet_suggested is not None
            and sheet_suggested < set(machine)
            and (exported_scores is None or exported_scores > len(sheet_suggested))
        ):
            missing = ";".join(c for c in machine if c not in sheet_suggested)
            checked.deleted_codes.append(
                Conflict(row.row, unit_id, f"{missing} deleted from suggested_codes")
            )
            continue
        if not has_content:
            checked.blank += 1
            continue
        if decision == "accept":
            planned = [NewDecision(unit_id, c, "accept", memo) for c in machine]
        elif decision == "reject":
            planned = [NewDecision(unit_id, c, "reject", memo) for c in machine]
        elif decision == "change":
            planned = [
                NewDecision(unit_id, c, "accept" if c in final else "reject", memo) for c in machine
            ]
            planned += [NewDecision(unit_id, c, "add", memo) for c in final if c not in machine]
            planned += [
                NewDecision(unit_id, c, "remove", memo)
                for c in sorted(people_added.get(unit_id, set()) - set(final))
            ]
        else:
            planned = []
        if not planned and memo:
            planned = [NewDecision(unit_id, "", "note", memo)]
        if not planned:
            checked.nothing.append(row.row)
            continue
        checked.plans.append(
            _Plan(
                row.row,
                unit_id,
                reviewer,
                int(float(version_cell)),
                planned,
                sheet_suggested,
                moved_from,
            )
        )
    if exported_rows:
        missing_rows = sorted(set(range(1, exported_rows + 1)) - seen_export_rows)
        checked.deleted_rows = [f"exported row {k} of {exported_rows}" for k in missing_rows]
    return checked


def _now_text(old: pd.DataFrame, unit_id: str, units: pd.DataFrame, texts: dict) -> str:
    """What the edited interview holds where a unit used to be: the current unit of the same
    interview whose text is most like it (for the reviewer to compare), or ""."""
    from difflib import SequenceMatcher

    (row,) = old[old["unit_id"] == unit_id].itertuples(index=False)
    same = units[(units["transcript_id"] == row.transcript_id) & units["codable"]]
    best, best_ratio = "", 0.6
    for text in same["text"]:
        ratio = SequenceMatcher(None, row.text, text).ratio()
        if ratio > best_ratio:
            best, best_ratio = text, ratio
    return best


def _changed_by(store: Store, unit_id: str, since: int, reviewer: str | None = None) -> str:
    """Who decided on a unit after the sheet's version, e.g. 'ann (web, 2026-03-01 10:02)'."""
    query = "SELECT reviewer, source, at FROM decisions WHERE unit_id = ? AND decision_id > ?"
    params: tuple = (unit_id, since)
    if reviewer is not None:  # not "? IS NULL": PostgreSQL cannot type an unused parameter
        query, params = query + " AND reviewer = ?", (*params, reviewer)
    rows = store.db.execute(query + " ORDER BY decision_id", params).fetchall()
    latest: dict[tuple[str, str], str] = {}
    for reviewer, source, at in rows:
        latest[reviewer, source] = str(at)[:16].replace("T", " ")
    if not latest:
        return "its decisions no longer match the sheet's version"
    return "since then: " + ", ".join(f"{r} ({s}, {at})" for (r, s), at in latest.items())


def import_sheet(store: Store, path: str | Path, reviewer: str | None = None) -> ImportReport:
    """Validate a filled review sheet, then record its decisions (``source='sheet'``).

    ``reviewer`` fills blank reviewer cells. Raises ``SheetError`` (nothing written) if any row
    has a problem; conflicting units are skipped and listed in the report, so is every row of a
    unit changed since the export, with both texts. In a per-reviewer sheet only that reviewer's
    own later decisions are conflicts (independent double coding).
    """
    path = Path(path)
    rows = read_sheet(path)
    codebook = store.codebook()
    sheet_reviewer = _sheet_reviewer(rows, path)
    checked = _plan_rows(rows, store, codebook, reviewer, sheet_reviewer)
    problems = checked.problems
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
        more = len(problems) - MAX_LISTED
        raise SheetError(
            f"{len(problems)} problem(s); nothing was imported. Fix them and import again:\n"
            + shown
            + (f"\n  ... and {more} more" if more > 0 else ""),
            path,
            problems=problems,
        )
    report = ImportReport(
        path,
        rows_read=len(rows),
        skipped_blank=checked.blank,
        nothing_to_record=checked.nothing,
        conflicts=list(checked.changed),
        blank_changed=checked.blank_changed,
        deleted_codes=checked.deleted_codes,
        deleted_rows=checked.deleted_rows,
        sheet_reviewer=sheet_reviewer,
    )
    scope = sheet_reviewer or None
    machine = {u: frozenset(c) for u, c in _ranked(store.suggestions()).items()}
    for plan in checked.plans:
        now_suggested = machine.get(plan.unit_id, frozenset())
        if plan.sheet_suggested is not None and plan.sheet_suggested != now_suggested:
            report.conflicts.append(
                Conflict(
                    plan.row,
                    plan.unit_id,
                    "the machine's suggestions changed since the export (a newer run suggests "
                    f"{';'.join(sorted(now_suggested)) or 'no codes'}); not imported",
                )
            )
            continue
        # Decisions since the export: on the exported unit (ids only grow, so "after the
        # sheet's version" is exact), and on the unit its text moved to.
        since = max(
            store.unit_version(plan.moved_from or plan.unit_id, scope),
            store.unit_version(plan.unit_id, scope),
        )
        try:
            if since > plan.version:
                raise StaleUnitError("decided since the export")
            written = store.decide(
                plan.reviewer,
                plan.decisions,
                source="sheet",
                expected_versions={plan.unit_id: store.unit_version(plan.unit_id, scope)},
                version_reviewer=scope,
            )
        except StaleUnitError:
            report.conflicts.append(
                Conflict(
                    plan.row,
                    plan.unit_id,
                    f"{ALREADY} ({_changed_by(store, plan.unit_id, plan.version, scope)}); "
                    "not overwritten",
                )
            )
            continue
        report.units_decided += 1
        report.moved += bool(plan.moved_from)
        report.decisions_written += len(written)
    report.conflicts.sort(key=lambda c: c.row)
    return report
