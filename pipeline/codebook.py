"""Codebook: load, validate and describe the codes units are coded against.

A codebook is a YAML file (see ``codebooks/west_partnership.yaml``). Validation rejects what a
person would get wrong by hand: duplicate ids, groups or kinds not declared, empty definitions,
renames that point nowhere; each message names the code and its line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import CodebookError

Kind = Literal["enabler", "inhibitor", "context"]
KINDS: tuple[str, ...] = ("enabler", "inhibitor", "context")


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    label: str
    description: str = ""


class Code(BaseModel):
    """One codebook entry, e.g. ``ts.trust``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    label: str = Field(min_length=1)
    group: str
    kind: Kind
    definition: str
    include: str = ""
    exclude: str = ""
    examples: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _id_is_simple(cls, value: str) -> str:
        if value != value.strip() or " " in value:
            raise ValueError("must not contain spaces")
        return value

    @field_validator("definition")
    @classmethod
    def _definition_not_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("is empty: write 2-4 sentences saying what the code captures")
        return " ".join(value.split())

    @field_validator("include", "exclude", "label")
    @classmethod
    def _tidy(cls, value: str) -> str:
        return " ".join((value or "").split())

    @field_validator("examples")
    @classmethod
    def _examples_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        tidy = tuple(" ".join(str(e).split()) for e in value)
        if any(not e for e in tidy):
            raise ValueError("contains an empty example")
        return tidy

    def prototype_texts(self) -> list[str]:
        """Texts whose embeddings stand for this code: its definition and its examples."""
        return [f"{self.label}. {self.definition}", *self.examples]


class Codebook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str = ""
    description: str = ""
    source: str = ""
    groups: tuple[Group, ...]
    kinds: dict[str, str] = {}
    codes: tuple[Code, ...]
    renamed: dict[str, str] = {}
    path: str = ""

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.codes]

    def code(self, code_id: str) -> Code:
        for c in self.codes:
            if c.id == code_id:
                return c
        raise KeyError(code_id)

    def group(self, group_id: str) -> Group:
        for g in self.groups:
            if g.id == group_id:
                return g
        raise KeyError(group_id)

    def counterparts(self, code_id: str) -> list[Code]:
        """Codes of the opposite kind in the same group (enablers for an inhibitor...)."""
        code = self.code(code_id)
        opposite = {"enabler": "inhibitor", "inhibitor": "enabler"}.get(code.kind)
        return [c for c in self.codes if c.group == code.group and c.kind == opposite]

    @property
    def sha256(self) -> str:
        """Hash of the content (not the file bytes): reformatting the YAML keeps the hash."""
        content = self.model_dump(exclude={"path"})
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _node_lines(root: yaml.Node | None) -> tuple[dict[str, int], list[int], dict[str, int]]:
    """Line numbers (1-based) of top-level keys, of each code entry, and of each group."""
    top: dict[str, int] = {}
    code_lines: list[int] = []
    group_lines: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return top, code_lines, group_lines
    for key, value in root.value:
        top[str(key.value)] = key.start_mark.line + 1
        if key.value == "codes" and isinstance(value, yaml.SequenceNode):
            code_lines = [item.start_mark.line + 1 for item in value.value]
        if key.value == "groups" and isinstance(value, yaml.MappingNode):
            group_lines = {str(k.value): k.start_mark.line + 1 for k, _ in value.value}
    return top, code_lines, group_lines


def _first_error(error: ValidationError) -> str:
    e = error.errors()[0]
    field = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        return f"'{field}' is missing"
    if e["type"] == "literal_error":
        return f"'{field}' is '{e['input']}', but must be one of: {', '.join(KINDS)}"
    if e["type"] == "extra_forbidden":
        return f"'{field}' is not a codebook field (check the spelling)"
    return f"'{field}' {msg}"


def parse_codebook(text: str, path: str = "<codebook>") -> Codebook:
    """Validate codebook YAML text; raise ``CodebookError`` naming the code and line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(error, "problem", None) or str(error)
        raise CodebookError(f"not valid YAML ({problem})", path, line) from None
    except RecursionError:
        raise CodebookError("the YAML is nested too deeply to be a codebook", path) from None
    if not isinstance(data, dict):
        raise CodebookError("expected a mapping with 'name', 'groups' and 'codes'", path, 1)
    top, code_lines, group_lines = _node_lines(root)
    for key in ("name", "groups", "codes"):
        if key not in data:
            raise CodebookError(f"the codebook has no '{key}' section", path, 1)

    raw_groups = data["groups"]
    if not isinstance(raw_groups, dict) or not raw_groups:
        raise CodebookError(
            "'groups' must map each group id to a label and description", path, top.get("groups")
        )
    groups = []
    for gid, body in raw_groups.items():
        body = body if isinstance(body, dict) else {"label": str(body or gid)}
        try:
            groups.append(Group(id=str(gid), **{"label": str(gid), **body}))
        except (ValidationError, TypeError) as error:
            detail = _first_error(error) if isinstance(error, ValidationError) else str(error)
            raise CodebookError(f"group '{gid}': {detail}", path, group_lines.get(gid)) from None
    group_ids = {g.id for g in groups}

    raw_codes = data["codes"]
    if not isinstance(raw_codes, list) or not raw_codes:
        raise CodebookError("'codes' must be a non-empty list", path, top.get("codes"))
    codes: list[Code] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_codes):
        line = code_lines[index] if index < len(code_lines) else None
        if not isinstance(raw, dict):
            raise CodebookError(f"code #{index + 1} is not a mapping of fields", path, line)
        name = str(raw.get("id") or f"#{index + 1}")
        try:
            code = Code(**raw)
        except ValidationError as error:
            raise CodebookError(f"code '{name}': {_first_error(error)}", path, line) from None
        if code.id in seen:
            raise CodebookError(
                f"code '{code.id}' is defined twice (first at line {seen[code.id]}): "
                "give each code its own id",
                path,
                line,
            )
        if code.group not in group_ids:
            raise CodebookError(
                f"code '{code.id}' has group '{code.group}', which is not declared under "
                f"'groups' (declared: {', '.join(sorted(group_ids))})",
                path,
                line,
            )
        seen[code.id] = line or 0
        codes.append(code)

    renamed = data.get("renamed") or {}
    if not isinstance(renamed, dict):
        raise CodebookError("'renamed' must map old code ids to new ones", path, top.get("renamed"))
    for old, new in renamed.items():
        if old in seen:
            raise CodebookError(
                f"rename '{old}' -> '{new}': '{old}' is still a code; remove it from 'codes' "
                "or from 'renamed' (a code cannot be renamed and kept)",
                path,
                top.get("renamed"),
            )
        if new not in seen:
            raise CodebookError(
                f"rename '{old}' -> '{new}' points to a code that does not exist",
                path,
                top.get("renamed"),
            )
    extra = {
        k: v
        for k, v in data.items()
        if k in {"version", "description", "source", "kinds"} and v is not None
    }
    if "version" in extra:
        extra["version"] = str(extra["version"])
    unknown = set(data) - {"name", "groups", "codes", "renamed", *extra}
    if unknown:
        key = sorted(unknown)[0]
        raise CodebookError(f"'{key}' is not a codebook section", path, top.get(key))
    return Codebook(
        name=str(data["name"]),
        groups=tuple(groups),
        codes=tuple(codes),
        renamed={str(k): str(v) for k, v in renamed.items()},
        path=path,
        **extra,
    )


def load_codebook(path: str | Path) -> Codebook:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodebookError("file not found", path) from None
    except UnicodeDecodeError:
        raise CodebookError("not a UTF-8 text file", path) from None
    except OSError as error:
        raise CodebookError(f"cannot be read ({error.strerror})", path) from None
    return parse_codebook(text, str(path))
