"""Codebooks from a spreadsheet: one row per code, turned into our YAML codebook.

Teams often keep their codebook in Excel. Columns (header row, any case): ``id``, ``label``,
``definition``, and optionally ``group``, ``kind``, ``include``, ``exclude``, ``examples``
(several separated by ``;`` or line breaks), and ``applies_to:ATTRIBUTE`` (e.g.
``applies_to:question``; values separated by ``;`` or line breaks). Each bad row is named with
its row number as the sheet shows it; the YAML written is checked by the ordinary loader.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from pipeline.codebook import DEFAULT_GROUP, KINDS, Code, Codebook, Group, field_problem
from pipeline.errors import CodebookError
from pipeline.interop.qdc import WrittenCodebook, codebook_yaml, slug, write_atomically
from pipeline.interop.sheets import _value, read_grid

REQUIRED = ("id", "label", "definition")
OPTIONAL = ("group", "kind", "include", "exclude", "examples")
SCOPE_PREFIX = "applies_to:"
_SEPARATORS = re.compile(r"\s*(?:;|\r?\n)\s*")


def _column(name: str) -> str:
    """``Applies to: Question`` -> ``applies_to:question``; ``Definition `` -> ``definition``."""
    name = " ".join(name.split()).lower()
    head, sep, tail = name.partition(":")
    head = head.replace(" ", "_").replace("-", "_")
    return f"{head}:{tail.strip()}" if sep else head


def _items(cell: str) -> list[str]:
    return [part for part in _SEPARATORS.split(cell.strip()) if part]


def codebook_from_rows(
    grid: list[list[object]], path: Path, name: str
) -> tuple[Codebook, list[str]]:
    """A codebook from a sheet's rows (header first), and warnings about ignored columns."""
    if not grid or not any(_value(c).strip() for c in grid[0]):
        raise CodebookError(
            "the first row must name the columns: id, label, definition (and optionally "
            f"{', '.join(OPTIONAL)})",
            path,
            1,
        )
    header = [_column(_value(c)) for c in grid[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CodebookError(
            f"missing column(s) {', '.join(missing)} (found: "
            f"{', '.join(h for h in header if h) or 'none'}); name them in the first row",
            path,
            1,
        )
    warnings: list[str] = []
    used: dict[str, int] = {}
    for index, column in enumerate(header):
        if not column:
            continue
        if column in used:
            raise CodebookError(
                f"two columns are called '{column}' (columns {used[column] + 1} and "
                f"{index + 1}); rename or delete one",
                path,
                1,
            )
        used[column] = index
        known = column in REQUIRED or column in OPTIONAL or column.startswith(SCOPE_PREFIX)
        if not known:
            warnings.append(f"column '{column}' is not a codebook column; it was left out")
        if column == SCOPE_PREFIX:
            raise CodebookError(
                f"column {index + 1} '{column}' names no attribute: write e.g. "
                "'applies_to:question'",
                path,
                1,
            )
    codes: list[Code] = []
    group_labels: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for number, cells in enumerate(grid[1:], start=2):
        row = {c: _value(cells[i]).strip() if i < len(cells) else "" for c, i in used.items()}
        if not any(row.values()):
            continue
        code_id = row["id"]
        where = f"row {number}" + (f" (code '{code_id}')" if code_id else "")
        if not code_id:
            raise CodebookError(f"{where}: the id is empty; give every code an id", path, number)
        if code_id in first_row:
            raise CodebookError(
                f"{where}: the id is also used on row {first_row[code_id]}; give each code its "
                "own id",
                path,
                number,
            )
        first_row[code_id] = number
        kind = row.get("kind", "").lower() or None
        if kind is not None and kind not in KINDS:
            raise CodebookError(
                f"{where}: kind '{row['kind']}' must be one of {', '.join(KINDS)}, or empty",
                path,
                number,
            )
        group_label = row.get("group", "")
        group_id = slug(group_label) if group_label else DEFAULT_GROUP
        if group_id in group_labels and group_labels[group_id] != (group_label or "Codes"):
            raise CodebookError(
                f"{where}: group '{group_label}' and group '{group_labels[group_id]}' would get "
                f"the same id '{group_id}'; spell them the same or make them differ in letters",
                path,
                number,
            )
        group_labels[group_id] = group_label or "Codes"
        scope = {
            c.removeprefix(SCOPE_PREFIX).strip(): _items(v)
            for c, v in row.items()
            if c.startswith(SCOPE_PREFIX) and v
        }
        try:
            codes.append(
                Code(
                    id=code_id,
                    label=row["label"],
                    group=group_id,
                    kind=kind,
                    definition=row["definition"],
                    include=row.get("include", ""),
                    exclude=row.get("exclude", ""),
                    examples=tuple(_items(row.get("examples", ""))),
                    applies_to=scope,
                )
            )
        except ValidationError as error:
            raise CodebookError(f"{where}: {field_problem(error)}", path, number) from None
    if not codes:
        raise CodebookError("the sheet has a header row but no codes", path, 2)
    groups = tuple(Group(id=g, label=label) for g, label in group_labels.items())
    return Codebook(name=name, groups=groups, codes=tuple(codes)), warnings


def import_codebook_table(
    path: str | Path, out: str | Path, name: str | None = None
) -> WrittenCodebook:
    """Read a codebook spreadsheet (.csv or .xlsx) and write it as our YAML codebook, checked."""
    from pipeline.codebook import parse_codebook

    path, out = Path(path), Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise CodebookError("the codebook to write must end in .yaml", out)
    grid = read_grid(path, CodebookError, "codebook", "a codebook spreadsheet")
    book, warnings = codebook_from_rows(grid, path, name or path.stem.replace("_", " "))
    text = codebook_yaml(book)
    checked = parse_codebook(text, str(out))  # what the other commands will read
    write_atomically(out, text.encode("utf-8"))
    return WrittenCodebook(out, checked, tuple(warnings))
