"""Codebook: load, validate and describe the codes units are coded against.

A codebook is a YAML file (see ``codebooks/west_partnership.yaml``). Validation rejects what a
person would get wrong by hand: duplicate ids or keys, groups or kinds not declared, empty
definitions, renames that point nowhere, fields of the wrong shape; each message names the code
and its line. Hostile files (alias bombs, deep nesting, huge files) are refused before they cost
time or memory. A code may be scoped to some questions or attributes with ``applies_to``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import CodebookError, CodebookLimitError

Kind = Literal["enabler", "inhibitor", "context"]
KINDS: tuple[str, ...] = ("enabler", "inhibitor", "context")
# Limits that no real codebook comes near (the shipped one: 55 kB, depth 5, no aliases) but that
# stop a hostile file early: a 636-byte YAML "alias bomb" otherwise expands to billions of
# nodes and runs for minutes before running out of memory.
MAX_BYTES = 2_000_000
MAX_DEPTH = 40
MAX_ALIASES = 100
MAX_NODES = 200_000
DEFAULT_GROUP = "codes"
SECTIONS = ("name", "version", "description", "source", "groups", "kinds", "codes", "renamed")


def _plain(value: str) -> str:
    """How attribute values are compared: spacing and case do not matter."""
    return " ".join(value.split()).casefold()


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    id: str
    label: str
    description: str = ""


class Code(BaseModel):
    """One codebook entry, e.g. ``ts.trust``."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    label: str = Field(min_length=1)
    group: str = DEFAULT_GROUP
    kind: Kind | None = None  # enabler/inhibitor pairs give the coder a stance; optional
    definition: str
    include: str = ""
    exclude: str = ""
    examples: tuple[str, ...] = ()
    # Attribute name -> values: the code applies only to units whose attribute has one of them,
    # e.g. {"question": ("What could we do better?",)}. Empty: applies everywhere.
    applies_to: dict[str, tuple[str, ...]] = {}

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

    @field_validator("applies_to", mode="before")
    @classmethod
    def _scope(cls, value: object) -> object:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(
                "must map an attribute to its values, e.g. applies_to: {question: [Q1, Q2]}"
            )
        scope: dict[str, tuple[str, ...]] = {}
        for name, values in value.items():
            if isinstance(name, dict | list) or not str(name).strip():
                raise ValueError("names an attribute that is not a plain word")
            items = values if isinstance(values, list) else [values]
            if not items or any(isinstance(v, dict | list) or v is None for v in items):
                raise ValueError(
                    f"'{name}' must be a value or a list of values (text), e.g. [Q1, Q2]"
                )
            scope[str(name).strip()] = tuple(" ".join(str(v).split()) for v in items)
        return scope

    @field_validator("examples")
    @classmethod
    def _examples_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        tidy = tuple(" ".join(str(e).split()) for e in value)
        if any(not e for e in tidy):
            raise ValueError("contains an empty example")
        return tidy

    def applies(self, attributes: Mapping[str, str]) -> bool:
        """Whether this code may be given to a unit with these attributes (a unit without an
        attribute the code is scoped by does not get it)."""
        for name, values in self.applies_to.items():
            given = attributes.get(name)
            if given is None or _plain(str(given)) not in {_plain(v) for v in values}:
                return False
        return True

    def prototype_texts(self) -> list[str]:
        """Texts whose embeddings stand for this code: its label and definition, and its
        examples; a code without examples gets its definition's sentences instead.

        A long definition names several things the code covers ("staff attitude", "dignity",
        "teamwork"); embedded whole it becomes one vector that sits near none of them. The
        zero-shot score takes the best matching text, so a code's sentences let a unit match
        the part it is about. Examples already do that where a codebook has them. Chosen on
        development halves: NHS answers (no examples) held-out micro-F1 0.225 -> 0.315; splitting
        the West codebook's definitions too (it has examples) measured worse (docs/zero-shot.md).
        """
        if self.examples:
            return [f"{self.label}. {self.definition}", *self.examples]
        first, *rest = definition_sentences(self.definition) or [self.definition]
        return [f"{self.label}. {first}", *rest]


# Where a definition's sentence ends: ., ! or ? (and any closing quote or bracket) before a
# capital or digit, unless the word before is an abbreviation; and list bullets (" - Next").
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\s+-\s+(?=[A-Z])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|vs|cf|approx|incl|Dr|Mr|Mrs|Ms|St|No)\.|\b[A-Z]\.)$")


def definition_sentences(text: str) -> list[str]:
    """A definition cut into sentences and list items (plain rules, no model: a codebook loads
    without spaCy, and the same text always gives the same texts)."""
    text = " ".join(text.split())
    pieces, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        mark = end.group().rstrip()  # ".", ".)" ... or " -" (a bullet: not kept)
        stop = end.start() if mark.endswith("-") else end.start() + len(mark)
        if _ABBREVIATION.search(text[start : end.start() + 1]):
            continue
        pieces.append(text[start:stop].strip())
        start = end.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


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
        opposite = {"enabler": "inhibitor", "inhibitor": "enabler"}.get(code.kind or "")
        if opposite is None:
            return []
        return [c for c in self.codes if c.group == code.group and c.kind == opposite]

    @property
    def scoped_by(self) -> list[str]:
        """Attribute names some code's ``applies_to`` uses (the inputs must supply them)."""
        return sorted({name for c in self.codes for name in c.applies_to})

    @property
    def sha256(self) -> str:
        """Hash of the content (not the file bytes): reformatting the YAML keeps the hash."""
        content = self.model_dump(exclude={"path"})
        for code in content["codes"]:  # fields added later: absent keeps older hashes
            if not code["applies_to"]:
                del code["applies_to"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class _LimitedLoader(yaml.SafeLoader):
    """A SafeLoader that counts nesting and aliases while composing, and refuses duplicate
    keys while constructing (plain PyYAML keeps the last value silently)."""

    def __init__(self, text: str, path: str):
        super().__init__(text)
        self.path, self.depth, self.aliases = path, 0, 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise CodebookLimitError(
                    f"more than {MAX_ALIASES} YAML aliases (*name): write the values out; a "
                    "codebook does not need aliases",
                    self.path,
                    line,
                )
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise CodebookLimitError(
                f"nested more than {MAX_DEPTH} levels deep: a codebook needs about 5 (codes, "
                "a code, its examples); check the indentation and brackets",
                self.path,
                line,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[str, int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise CodebookError(
                    f"the key '{key_node.value}' appears twice in one mapping (lines "
                    f"{seen[key_node.value]} and {line}); YAML would silently keep only the "
                    "second: delete or merge one of them",
                    self.path,
                    line,
                )
            seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, path: str) -> int:
    """Nodes the document has once aliases are expanded (what a program walking it sees)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise CodebookLimitError(
                "a YAML alias refers to a list or mapping that contains it; write the values out",
                path,
                node.start_mark.line + 1,
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise CodebookLimitError(
                    f"expands to more than {MAX_NODES:,} values once YAML aliases (*name) are "
                    "written out: a codebook is far smaller; remove the aliases, or check that "
                    "this is the right file",
                    path,
                    node.start_mark.line + 1,
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _read_yaml(text: str, path: str) -> tuple[object, yaml.Node | None]:
    """(data, root node) of codebook YAML, within the limits above."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise CodebookLimitError(
            f"the file is {size / 1e6:.1f} MB; a codebook larger than {MAX_BYTES / 1e6:.0f} MB "
            "is not a codebook (is this the right file?)",
            path,
        )
    loader = None
    try:
        loader = _LimitedLoader(text, path)  # its reader refuses control characters at once
        root = loader.get_single_node()
        if root is None:
            return None, None
        _expanded_size(root, path)
        return loader.construct_document(root), root
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(error, "problem", None) or str(error)
        raise CodebookError(
            f"not valid YAML ({problem}); check the indentation and quotes near this line",
            path,
            line,
        ) from None
    except RecursionError:
        raise CodebookLimitError("the YAML is nested too deeply to be a codebook", path) from None
    finally:
        if loader is not None:
            loader.dispose()


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


def field_problem(error: ValidationError) -> str:
    """The first problem pydantic found, in a person's words."""
    e = error.errors()[0]
    field = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        return f"'{field}' is missing"
    if e["type"] == "string_too_short":
        return f"'{field}' is empty"
    if e["type"] == "literal_error":
        return f"'{field}' is '{e['input']}', but must be one of: {', '.join(KINDS)}"
    if e["type"] == "extra_forbidden":
        return f"'{field}' is not a codebook field (check the spelling)"
    if e["type"] in ("string_type", "str_type"):
        return f"'{field}' must be text, not {_shape(e['input'])}"
    if e["type"] in ("tuple_type", "list_type"):
        return f"'{field}' must be a list (one '- item' per line), not {_shape(e['input'])}"
    if e["type"] == "dict_type":
        return f"'{field}' must be a mapping ('name: value' lines), not {_shape(e['input'])}"
    return f"'{field}' {msg}"


def _shape(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "empty"
    return f"'{value}'"


def _text(value: object, what: str, path: str, line: int | None) -> str:
    """A scalar as text (numbers and dates too); lists and mappings are an error."""
    if isinstance(value, dict | list):
        raise CodebookError(f"{what} must be text, not {_shape(value)}", path, line)
    return "" if value is None else str(value)


def _text_mapping(value: object, what: str, path: str, line: int | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CodebookError(
            f"'{what}' must be a mapping of 'name: text' lines, not {_shape(value)}", path, line
        )
    return {
        _text(k, f"a name in '{what}'", path, line): _text(v, f"'{what}: {k}'", path, line)
        for k, v in value.items()
    }


def parse_codebook(text: str, path: str = "<codebook>") -> Codebook:
    """Validate codebook YAML text; raise ``CodebookError`` naming the code and line."""
    data, root = _read_yaml(text, path)
    if not isinstance(data, dict):
        raise CodebookError(
            "expected a mapping with 'name' and 'codes' (and optionally 'groups')", path, 1
        )
    top, code_lines, group_lines = _node_lines(root)
    for key in ("name", "codes"):
        if key not in data:
            raise CodebookError(f"the codebook has no '{key}' section", path, 1)
    unknown = [k for k in data if str(k) not in SECTIONS]
    if unknown:
        key = str(unknown[0])
        raise CodebookError(
            f"'{key}' is not a codebook section (sections: {', '.join(SECTIONS)})",
            path,
            top.get(key),
        )

    raw_groups = data.get("groups")
    if raw_groups is not None and (not isinstance(raw_groups, dict) or not raw_groups):
        raise CodebookError(
            "'groups' must map each group id to a label and description", path, top.get("groups")
        )
    groups = []
    for gid, body in (raw_groups or {}).items():
        line = group_lines.get(str(gid))
        if isinstance(body, list):
            raise CodebookError(
                f"group '{gid}' must be a label or a mapping with 'label' and 'description', "
                "not a list",
                path,
                line,
            )
        body = body if isinstance(body, dict) else {"label": str(body or gid)}
        try:
            groups.append(Group(**{"label": str(gid), **body, "id": str(gid)}))
        except (ValidationError, TypeError) as error:
            detail = field_problem(error) if isinstance(error, ValidationError) else str(error)
            raise CodebookError(f"group '{gid}': {detail}", path, line) from None
    group_ids = {g.id for g in groups}

    raw_codes = data["codes"]
    if not isinstance(raw_codes, list) or not raw_codes:
        raise CodebookError(
            "'codes' must be a non-empty list (one '- id: ...' entry per code)",
            path,
            top.get("codes"),
        )
    codes: list[Code] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_codes):
        line = code_lines[index] if index < len(code_lines) else None
        if not isinstance(raw, dict):
            raise CodebookError(f"code #{index + 1} is not a mapping of fields", path, line)
        name = str(raw.get("id") or f"#{index + 1}")
        fields = {str(k): v for k, v in raw.items()}
        if fields.get("kind") is None:
            fields.pop("kind", None)
        if fields.get("group") is None:
            fields["group"] = DEFAULT_GROUP
        try:
            code = Code(**fields)
        except ValidationError as error:
            raise CodebookError(f"code '{name}': {field_problem(error)}", path, line) from None
        if code.id in seen:
            raise CodebookError(
                f"code '{code.id}' is defined twice (first at line {seen[code.id]}): "
                "give each code its own id",
                path,
                line,
            )
        if code.group not in group_ids:
            if code.group != DEFAULT_GROUP or raw.get("group") is not None:
                declared = ", ".join(sorted(group_ids)) or "none"
                raise CodebookError(
                    f"code '{code.id}' has group '{code.group}', which is not declared under "
                    f"'groups' (declared: {declared})",
                    path,
                    line,
                )
            groups.append(Group(id=DEFAULT_GROUP, label="Codes"))
            group_ids.add(DEFAULT_GROUP)
        seen[code.id] = line or 0
        codes.append(code)

    renamed = _text_mapping(data.get("renamed"), "renamed", path, top.get("renamed"))
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
    extra: dict[str, object] = {
        key: _text(data[key], f"'{key}'", path, top.get(key))
        for key in ("version", "description", "source")
        if data.get(key) is not None
    }
    kinds = _text_mapping(data.get("kinds"), "kinds", path, top.get("kinds"))
    try:
        return Codebook(
            name=_text(data["name"], "'name'", path, top.get("name")),
            groups=tuple(groups),
            codes=tuple(codes),
            renamed=renamed,
            kinds=kinds,
            path=path,
            **extra,
        )
    except ValidationError as error:  # every field is checked above; kept as a safety net
        raise CodebookError(f"{field_problem(error)}", path) from None


def applicable(codebook: Codebook, attributes: Mapping[str, str]) -> np.ndarray:
    """(codes,) bool: which codes a unit with these attributes may get, in codebook order."""
    return np.fromiter(
        (c.applies(attributes) for c in codebook.codes), dtype=bool, count=len(codebook.codes)
    )


def applicable_to_units(codebook: Codebook, attributes: Sequence[Mapping[str, str]]) -> np.ndarray:
    """(units, codes) bool mask for a score matrix: ``applicable`` for each unit's attributes.

    Rows with the same values of the scoping attributes share one computation."""
    names = codebook.scoped_by
    mask = np.ones((len(attributes), len(codebook.codes)), dtype=bool)
    if not names:
        return mask
    rows: dict[tuple, np.ndarray] = {}
    for i, unit in enumerate(attributes):
        key = tuple(None if unit.get(n) is None else _plain(str(unit[n])) for n in names)
        if key not in rows:
            rows[key] = applicable(codebook, unit)
        mask[i] = rows[key]
    return mask


def load_codebook(path: str | Path) -> Codebook:
    path = Path(path)
    if path.suffix.lower() in (".csv", ".xlsx", ".xls", ".tsv"):
        raise CodebookError(
            "this is a spreadsheet; a codebook is a YAML file. Turn the spreadsheet into one "
            f"with: qcode import-codebook {path.name} --out {path.stem}.yaml",
            path,
        )
    try:
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise CodebookLimitError(
                f"the file is {path.stat().st_size / 1e6:.1f} MB; a codebook larger than "
                f"{MAX_BYTES / 1e6:.0f} MB is not a codebook (is this the right file?)",
                path,
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CodebookError("file not found", path) from None
    except UnicodeDecodeError:
        raise CodebookError("not a UTF-8 text file", path) from None
    except OSError as error:
        raise CodebookError(f"cannot be read ({error.strerror})", path) from None
    key = (str(path), text)
    if key not in _PARSED:
        _PARSED.clear()  # one codebook at a time is the usual case; never grow without bound
        _PARSED[key] = parse_codebook(text, str(path))
    return _PARSED[key].model_copy(deep=True)


# The codebook this process parsed last, by file and exact text: a watching process (``qcode
# run --watch``) checks and parses it again only when it changes (0.2-0.3 s of every edit at
# 700 pages went to YAML). Callers get a copy, so one cannot change another's.
_PARSED: dict[tuple[str, str], Codebook] = {}
