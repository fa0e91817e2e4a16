"""QDC codebooks: our YAML codebook as a REFI-QDA codebook (``.qdc``), and back.

NVivo, ATLAS.ti, MAXQDA and QualCoder exchange codebooks as QDA-XML (``urn:QDA-XML:codebook:1.0``).
Our codebook maps onto it like this, and the same ``<Codes>`` go into a QDPX project:

* each group is a parent code that cannot be coded (``isCodable="false"``), its codes its children;
* a code's ``Description`` holds its definition, include, exclude, examples, kind, id and former
  ids in a labelled layout (``Definition: ...``) that people can read in their tool and that
  ``parse_code_description`` reads back;
* GUIDs are uuid5 of the codebook name and the id, so re-exports and project exports agree and
  a tool that has the codebook already recognises its codes; colours come from the group (one hue
  per group) and the kind (one shade per kind), never from chance;
* one Set per kind (``kind: enabler``) lists its codes (ATLAS.ti and MAXQDA show Sets as code
  groups), and a Set ``qcode codebook`` carries the name, version, description and source.

Importing a QDC from another tool turns nested codes into groups and codes, and says what it had
to guess (a missing kind becomes ``context``, a missing definition the code's name).
There is no codebook XSD in the REFI files we hold, so a QDC is checked structurally: its Code
and Set elements are checked against the project schema's types, which the codebook shares.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from lxml import etree

from pipeline.codebook import KINDS, Code, Codebook, Group, parse_codebook
from pipeline.errors import CodebookError, QcodeError

CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
PROJECT_NS = "urn:QDA-XML:project:1.0"
SCHEMA = Path(__file__).parent / "schemas" / "Project-mrt2019.xsd"
# All our GUIDs are uuid5 in this namespace: the same input always gives the same GUID.
QCODE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "qcode:refi-qda")
METADATA_SET = "qcode codebook"
KIND_SET_PREFIX = "kind: "
DEFAULT_GROUP = "ungrouped"
DEFAULT_KIND = "context"
LABELS = {
    "definition": "Definition:",
    "include": "Include:",
    "exclude": "Exclude:",
    "examples": "Examples:",
    "kind": "Kind:",
    "id": "Id:",
    "renamed": "Renamed from:",
}
_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\}?$")
_SLUG = re.compile(r"[^0-9a-z]+")


class RefiError(QcodeError):
    """A REFI-QDA file (QDPX project or QDC codebook) cannot be written or read."""

    code = "E960"
    fix = (
        "Check the file is a REFI-QDA export (.qdpx, .qdc or .qde) from the other tool, "
        "re-export it if it is damaged, and check the folder you write to exists and is "
        "writable."
    )


def guid(*parts: str) -> str:
    """A stable GUID for the given parts (uuid5 in qcode's namespace)."""
    return str(uuid.uuid5(QCODE_NAMESPACE, "\x00".join(parts)))


def code_guid(codebook: Codebook, code_id: str) -> str:
    return guid("code", codebook.name, code_id)


def group_guid(codebook: Codebook, group_id: str) -> str:
    return guid("group", codebook.name, group_id)


def _hash_unit(text: str) -> float:
    """A number in [0, 1) from a text, the same on every machine."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


def group_hues(codebook: Codebook) -> dict[str, float]:
    """One of 12 distinct hues per group, chosen from the group id (probing past taken ones)."""
    hues: dict[str, float] = {}
    taken: set[int] = set()
    for group in codebook.groups:
        slot = int(_hash_unit(group.id) * 12)
        for step in range(12):
            if (slot + step) % 12 not in taken or len(taken) >= 12:
                slot = (slot + step) % 12
                break
        taken.add(slot)
        hues[group.id] = slot / 12
    return hues


def _hex(hue: float, lightness: float, saturation: float) -> str:
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#" + "".join(f"{round(c * 255):02X}" for c in (red, green, blue))


def code_colour(codebook: Codebook, code: Code, hues: dict[str, float] | None = None) -> str:
    """The group's hue, a shade per kind, and a small nudge from the code id."""
    hue = (hues or group_hues(codebook))[code.group]
    shade = {"enabler": 0.36, "inhibitor": 0.58, "context": 0.47}.get(code.kind, 0.47)
    return _hex(hue, shade + (_hash_unit(code.id) - 0.5) * 0.1, 0.62)


def group_colour(codebook: Codebook, group_id: str, hues: dict[str, float] | None = None) -> str:
    return _hex((hues or group_hues(codebook))[group_id], 0.3, 0.55)


# -- descriptions -------------------------------------------------------------------------------


def code_description(code: Code, renamed_from: list[str]) -> str:
    """The code's fields in the labelled layout ``parse_code_description`` reads."""
    blocks = [f"{LABELS['definition']} {code.definition}"]
    if code.include:
        blocks.append(f"{LABELS['include']} {code.include}")
    if code.exclude:
        blocks.append(f"{LABELS['exclude']} {code.exclude}")
    if code.examples:
        blocks.append("\n".join([LABELS["examples"], *(f"- {e}" for e in code.examples)]))
    tail = [f"{LABELS['kind']} {code.kind}"] if code.kind else []
    tail.append(f"{LABELS['id']} {code.id}")
    if renamed_from:
        tail.append(f"{LABELS['renamed']} {', '.join(renamed_from)}")
    blocks.append("\n".join(tail))
    return "\n\n".join(blocks)


def parse_code_description(text: str) -> dict[str, object]:
    """Fields from a code's Description. Unlabelled text (another tool's free description)
    is the definition; ``examples`` is a list, ``renamed`` a list of former ids."""
    fields: dict[str, list[str]] = {}
    current = "definition"
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        for key, label in LABELS.items():
            if line.lower().startswith(label.lower()):
                current = key
                line = line[len(label) :].strip()
                break
        if not line:
            fields.setdefault(current, [])
            continue
        if current == "examples":
            fields.setdefault("examples", []).append(line.removeprefix("- ").strip())
        else:
            fields.setdefault(current, []).append(line)
    out: dict[str, object] = {k: " ".join(v) for k, v in fields.items() if k != "examples"}
    out["examples"] = [e for e in fields.get("examples", []) if e]
    out["renamed"] = [r for r in re.split(r"[,;\s]+", str(out.get("renamed", ""))) if r]
    return out


def group_description(group: Group) -> str:
    """``Id: <group id>``, a blank line, then the description exactly as written."""
    return f"{LABELS['id']} {group.id}" + (f"\n\n{group.description}" if group.description else "")


def parse_group_description(text: str) -> tuple[str | None, str]:
    """(group id or None, description) from a group's Description."""
    text = text or ""
    first, _, rest = text.partition("\n")
    match = re.fullmatch(r"Id:\s*(\S+)\s*", first)
    if not match:
        return None, text
    if rest.startswith("\n"):
        rest = rest[1:]
    return match.group(1), rest


# -- writing ------------------------------------------------------------------------------------


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _text_child(parent: etree._Element, ns: str, tag: str, text: str) -> etree._Element:
    child = etree.SubElement(parent, _q(ns, tag))
    child.text = text
    return child


def renamed_from(codebook: Codebook) -> dict[str, list[str]]:
    """new id -> the old ids that the ``renamed:`` map sends to it."""
    out: dict[str, list[str]] = {}
    for old, new in codebook.renamed.items():
        out.setdefault(new, []).append(old)
    return out


def codes_element(codebook: Codebook, ns: str) -> etree._Element:
    """``<Codes>``: groups as parent codes nobody codes with, codes as their children."""
    hues = group_hues(codebook)
    former = renamed_from(codebook)
    codes = etree.Element(_q(ns, "Codes"))
    for group in codebook.groups:
        parent = etree.SubElement(
            codes,
            _q(ns, "Code"),
            guid=group_guid(codebook, group.id),
            name=group.label,
            isCodable="false",
            color=group_colour(codebook, group.id, hues),
        )
        _text_child(parent, ns, "Description", group_description(group))
        for code in (c for c in codebook.codes if c.group == group.id):
            child = etree.SubElement(
                parent,
                _q(ns, "Code"),
                guid=code_guid(codebook, code.id),
                name=code.label,
                isCodable="true",
                color=code_colour(codebook, code, hues),
            )
            _text_child(child, ns, "Description", code_description(code, former.get(code.id, [])))
    return codes


def metadata_description(codebook: Codebook) -> str:
    return json.dumps(
        {
            "name": codebook.name,
            "version": codebook.version,
            "description": codebook.description,
            "source": codebook.source,
        },
        ensure_ascii=False,
        indent=1,
    )


def codebook_sets(codebook: Codebook, ns: str, member_attribute: str) -> list[etree._Element]:
    """One Set per kind with its codes, then the ``qcode codebook`` Set with the metadata.

    ``member_attribute`` is ``guid`` in a QDC and ``targetGUID`` in a project (the schemas
    differ there)."""
    sets = []
    used = [k for k in KINDS if k in codebook.kinds or any(c.kind == k for c in codebook.codes)]
    for kind in used:
        element = etree.Element(
            _q(ns, "Set"), guid=guid("kind", codebook.name, kind), name=KIND_SET_PREFIX + kind
        )
        if kind in codebook.kinds:
            _text_child(element, ns, "Description", codebook.kinds[kind])
        for code in (c for c in codebook.codes if c.kind == kind):
            etree.SubElement(
                element, _q(ns, "MemberCode"), {member_attribute: code_guid(codebook, code.id)}
            )
        sets.append(element)
    meta = etree.Element(_q(ns, "Set"), guid=guid("codebook", codebook.name), name=METADATA_SET)
    _text_child(meta, ns, "Description", metadata_description(codebook))
    sets.append(meta)
    return sets


def qdc_tree(codebook: Codebook, origin: str) -> etree._ElementTree:
    root = etree.Element(_q(CODEBOOK_NS, "CodeBook"), nsmap={None: CODEBOOK_NS}, origin=origin)
    root.append(codes_element(codebook, CODEBOOK_NS))
    sets = etree.SubElement(root, _q(CODEBOOK_NS, "Sets"))
    sets.extend(codebook_sets(codebook, CODEBOOK_NS, "guid"))
    return etree.ElementTree(root)


def serialise(tree: etree._ElementTree) -> bytes:
    """UTF-8 XML with a declaration, no BOM, LF line ends (what every tool reads)."""
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _project_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def qdc_problems(tree: etree._ElementTree) -> list[str]:
    """What is wrong with a QDC, checked structurally (there is no codebook XSD here).

    The root must be ``CodeBook`` in the codebook namespace with ``Codes`` then optional
    ``Sets``; the codes and sets are checked against the project schema's Code and Set types
    by placing them in a minimal project; GUIDs must be unique and members must exist."""
    root = tree.getroot()
    if root.tag != _q(CODEBOOK_NS, "CodeBook"):
        return [f"the root element is {root.tag}, not CodeBook in {CODEBOOK_NS}"]
    children = [c for c in root if isinstance(c.tag, str)]
    names = [etree.QName(c).localname for c in children]
    if names not in (["Codes"], ["Codes", "Sets"]):
        return [
            f"CodeBook must hold Codes then optionally Sets, not {', '.join(names) or 'nothing'}"
        ]
    problems = []
    project = etree.Element(_q(PROJECT_NS, "Project"), name="qdc check")
    book = etree.SubElement(project, _q(PROJECT_NS, "CodeBook"))
    book.append(_renamespaced(children[0], PROJECT_NS))
    if len(children) == 2:
        sets = _renamespaced(children[1], PROJECT_NS)
        for member in sets.iter(_q(PROJECT_NS, "MemberCode")):
            target = member.attrib.pop("guid", None)
            if target is not None:
                member.set("targetGUID", target)
        project.append(sets)
    schema = _project_schema()
    if not schema.validate(project):
        problems += [f"line {e.line}: {e.message}" for e in schema.error_log]
    guids = [c.get("guid", "") for c in root.iter(_q(CODEBOOK_NS, "Code"))]
    repeated = sorted({g for g in guids if guids.count(g) > 1})
    if repeated:
        problems.append(f"code GUIDs used twice: {', '.join(repeated)}")
    known = {g.upper().strip("{}") for g in guids}
    for member in root.iter(_q(CODEBOOK_NS, "MemberCode")):
        target = member.get("guid") or member.get("targetGUID") or ""
        if target.upper().strip("{}") not in known:
            problems.append(f"a Set lists code {target}, which is not in Codes")
    return problems


def _renamespaced(element: etree._Element, ns: str) -> etree._Element:
    copy = etree.fromstring(etree.tostring(element))
    for node in copy.iter():
        if isinstance(node.tag, str):
            node.tag = _q(ns, etree.QName(node).localname)
    return copy


def export_qdc(codebook: Codebook, out: str | Path, origin: str = "qcode") -> Path:
    """Write the codebook as a QDC; refuse (nothing written) if the result is not valid."""
    out = Path(out)
    tree = qdc_tree(codebook, origin)
    problems = qdc_problems(tree)
    if problems:
        raise RefiError("the codebook export is not valid QDA-XML: " + "; ".join(problems), out)
    write_atomically(out, serialise(tree))
    return out


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise RefiError(f"cannot write it ({error.strerror or error})", path) from None


# -- reading ------------------------------------------------------------------------------------


@dataclass
class RefiCode:
    """A Code element as another tool wrote it."""

    guid: str
    name: str
    codable: bool
    description: str
    color: str | None
    children: list[RefiCode] = field(default_factory=list)

    def walk(self) -> list[RefiCode]:
        return [self, *(d for c in self.children for d in c.walk())]


def norm_guid(value: str | None) -> str:
    return (value or "").strip().strip("{}").lower()


def local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def children_named(element: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in element if local(c) == name]


def child_text(element: etree._Element, name: str) -> str | None:
    found = children_named(element, name)
    return None if not found else (found[0].text or "")


def read_codes(codes: etree._Element) -> list[RefiCode]:
    """The code tree under a ``<Codes>`` element (either namespace, or none)."""

    def one(element: etree._Element) -> RefiCode:
        return RefiCode(
            guid=norm_guid(element.get("guid")),
            name=(element.get("name") or "").strip(),
            codable=(element.get("isCodable") or "true").strip().lower() not in ("false", "0"),
            description=child_text(element, "Description") or "",
            color=element.get("color"),
            children=[one(c) for c in children_named(element, "Code")],
        )

    return [one(c) for c in children_named(codes, "Code")]


def parse_xml(data: bytes, path: str | Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        return etree.ElementTree(etree.fromstring(data, parser))
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno else None
        raise RefiError(f"not well-formed XML ({error.msg})", path, line) from None


def codebook_root(path: str | Path) -> etree._Element:
    """The element holding ``Codes`` in a .qdc, a .qde or a .qdpx (its project.qde)."""
    path = Path(path)
    if not path.is_file():
        raise RefiError("no such file", path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            qde = [n for n in archive.namelist() if n.lower().endswith(".qde") and "/" not in n]
            if not qde:
                raise RefiError("this zip holds no .qde project file", path)
            data = archive.read(qde[0])
    else:
        data = path.read_bytes()
    root = parse_xml(data, path).getroot()
    if local(root) == "CodeBook":
        return root
    if local(root) == "Project":
        books = children_named(root, "CodeBook")
        if books:
            return root
        raise RefiError("the project has no CodeBook", path)
    raise RefiError(f"not a REFI-QDA codebook or project (root element {local(root)})", path)


def read_sets(root: etree._Element) -> list[tuple[str, str, str | None, list[str], list[str]]]:
    """(guid, name, description, member code guids, member source guids) of each Set."""
    out = []
    for sets in children_named(root, "Sets"):
        for element in children_named(sets, "Set"):
            out.append(
                (
                    norm_guid(element.get("guid")),
                    (element.get("name") or "").strip(),
                    child_text(element, "Description"),
                    [
                        norm_guid(m.get("targetGUID") or m.get("guid"))
                        for m in children_named(element, "MemberCode")
                    ],
                    [
                        norm_guid(m.get("targetGUID"))
                        for m in children_named(element, "MemberSource")
                    ],
                )
            )
    return out


def slug(text: str) -> str:
    return _SLUG.sub("_", text.lower()).strip("_") or "code"


@dataclass
class CodebookImport:
    """A codebook read from a QDC (or a project's CodeBook), with what had to be guessed."""

    codebook: Codebook
    warnings: list[str]
    # REFI code GUID -> our code id, for mapping a project's codings.
    guid_to_code: dict[str, str]


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _unique(candidate: str, taken: set[str]) -> str:
    value, n = candidate, 2
    while value in taken:
        value, n = f"{candidate}_{n}", n + 1
    taken.add(value)
    return value


def codebook_from_refi(root: etree._Element, default_name: str) -> CodebookImport:
    """Our Codebook from a CodeBook (QDC) or Project element: nested codes become groups and
    codes; ids, kinds and definitions come from our Description layout where present."""
    holder = children_named(root, "CodeBook")[0] if local(root) == "Project" else root
    codes_elements = children_named(holder, "Codes")
    if not codes_elements:
        raise RefiError("the codebook has no Codes")
    tree = read_codes(codes_elements[0])
    sets = read_sets(root)
    warnings: list[str] = []
    meta: dict[str, str] = {}
    kinds: dict[str, str] = {}
    kind_of: dict[str, str] = {}
    for _guid, name, description, members, _sources in sets:
        if name == METADATA_SET and description:
            try:
                loaded = json.loads(description)
                meta = {k: str(v) for k, v in loaded.items() if isinstance(v, str)}
            except json.JSONDecodeError:
                warnings.append(f"the '{METADATA_SET}' set's description is not ours; ignored")
        elif name.startswith(KIND_SET_PREFIX) and name[len(KIND_SET_PREFIX) :] in KINDS:
            kind = name[len(KIND_SET_PREFIX) :]
            if description is not None:
                kinds[kind] = description
            for member in members:
                kind_of[member] = kind

    # ATLAS.ti writes code groups as names "Group::code" on flat codes: nest them first.
    top: list[RefiCode] = []
    by_name = {c.name: c for c in tree}
    for code in tree:
        if "::" in code.name and not code.children:
            parent_name, _, child_name = code.name.partition("::")
            parent = by_name.get(parent_name)
            if parent is None:
                parent = RefiCode("", parent_name, False, "", None)
                by_name[parent_name] = parent
                top.append(parent)
            parent.children.append(
                RefiCode(code.guid, child_name, code.codable, code.description, code.color)
            )
        elif code not in top:
            top.append(code)

    groups: list[Group] = []
    codes: list[Code] = []
    renamed: dict[str, str] = {}
    group_ids: set[str] = set()
    code_ids: set[str] = set()
    guid_to_code: dict[str, str] = {}
    ungrouped: list[RefiCode] = []
    no_kind: list[str] = []
    no_definition: list[str] = []

    def add_code(node: RefiCode, group_id: str, label: str) -> None:
        fields = parse_code_description(node.description)
        code_id = str(fields.get("id") or "") or f"{group_id}.{slug(label)}"
        if " " in code_id or code_id in code_ids:
            code_id = f"{group_id}.{slug(label)}"
        code_id = _unique(code_id, code_ids)
        kind = str(fields.get("kind") or kind_of.get(node.guid) or "")
        if kind not in KINDS:
            if kind:
                warnings.append(f"code '{label}': kind '{kind}' is not one of {', '.join(KINDS)}")
            no_kind.append(label)
            kind = DEFAULT_KIND
        definition = str(fields.get("definition") or "").strip()
        if not definition:
            no_definition.append(label)
            definition = label
        codes.append(
            Code(
                id=code_id,
                label=label,
                group=group_id,
                kind=kind,  # type: ignore[arg-type]
                definition=definition,
                include=str(fields.get("include") or ""),
                exclude=str(fields.get("exclude") or ""),
                examples=tuple(fields["examples"]),  # type: ignore[arg-type]
            )
        )
        for old in fields["renamed"]:  # type: ignore[union-attr]
            renamed[str(old)] = code_id
        if node.guid:
            guid_to_code[node.guid] = code_id

    for node in top:
        if not node.children and node.codable:
            ungrouped.append(node)
            continue
        own_id, description = parse_group_description(node.description)
        group_id = _unique(own_id or slug(node.name), group_ids)
        groups.append(Group(id=group_id, label=node.name or group_id, description=description))
        if node.codable:
            warnings.append(
                f"'{node.name}' can be coded and has sub-codes: it is both group '{group_id}' "
                "and a code in it"
            )
            add_code(node, group_id, node.name)

        def descend(parents: list[str], children: list[RefiCode], group_id: str = group_id):
            for child in children:
                label = " › ".join([*parents, child.name])
                if parents:
                    warnings.append(
                        f"'{label}' was nested {len(parents) + 1} levels deep: flattened into "
                        f"group '{group_id}'"
                    )
                if child.codable:
                    add_code(child, group_id, label)
                elif not child.children:
                    warnings.append(f"'{label}' cannot be coded and has no sub-codes: left out")
                descend([*parents, child.name], child.children)

        descend([], node.children)
    if ungrouped:
        group_id = _unique(DEFAULT_GROUP, group_ids)
        groups.append(Group(id=group_id, label="Ungrouped", description=""))
        warnings.append(
            f"{len(ungrouped)} top-level code(s) had no parent: put in group '{group_id}'"
        )
        for node in ungrouped:
            add_code(node, group_id, node.name)
    if not codes:
        raise RefiError("the codebook has no codes that can be coded")
    if no_kind:
        warnings.append(
            f"{len(no_kind)} code(s) have no kind and were set to '{DEFAULT_KIND}' (make them "
            f"enabler or inhibitor where that is what they are): {_listed(no_kind)}"
        )
    if no_definition:
        warnings.append(
            f"{len(no_definition)} code(s) have no description, so their definition is their "
            f"name (write 2-4 sentences for each): {_listed(no_definition)}"
        )
    name = meta.get("name") or default_name
    if "name" not in meta:
        warnings.append(f"the codebook has no name: named '{name}' after the file")
    try:
        codebook = Codebook(
            name=name,
            version=meta.get("version", ""),
            description=meta.get("description", ""),
            source=meta.get("source", ""),
            groups=tuple(groups),
            kinds=kinds,
            codes=tuple(codes),
            renamed={k: v for k, v in renamed.items() if k not in code_ids},
        )
    except ValueError as error:
        raise RefiError(f"cannot make a codebook of it ({error})") from None
    return CodebookImport(codebook, warnings, guid_to_code)


class _Block(str):
    """A string written as a YAML literal block (keeps line breaks exactly)."""


def _represent_block(dumper: yaml.SafeDumper, value: _Block) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Block, _represent_block)


def _scalar(value: str) -> str:
    return _Block(value) if "\n" in value else value


def codebook_yaml(codebook: Codebook) -> str:
    """Our YAML format for a codebook (what ``parse_codebook`` reads)."""
    data: dict[str, object] = {"name": codebook.name}
    for key in ("version", "description", "source"):
        if getattr(codebook, key):
            data[key] = _scalar(getattr(codebook, key))
    data["groups"] = {
        g.id: {
            "label": g.label,
            **({"description": _scalar(g.description)} if g.description else {}),
        }
        for g in codebook.groups
    }
    if codebook.kinds:
        data["kinds"] = {k: _scalar(v) for k, v in codebook.kinds.items()}
    codes = []
    for c in codebook.codes:
        entry: dict[str, object] = {
            "id": c.id,
            "label": c.label,
            "group": c.group,
            **({"kind": c.kind} if c.kind else {}),
            "definition": c.definition,
        }
        if c.include:
            entry["include"] = c.include
        if c.exclude:
            entry["exclude"] = c.exclude
        if c.examples:
            entry["examples"] = list(c.examples)
        if c.applies_to:
            entry["applies_to"] = {k: list(v) for k, v in c.applies_to.items()}
        codes.append(entry)
    data["codes"] = codes
    if codebook.renamed:
        data["renamed"] = dict(codebook.renamed)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2)


@dataclass(frozen=True)
class WrittenCodebook:
    """What ``import_qdc`` or ``import_codebook_table`` wrote, for the CLI to say so."""

    path: Path
    codebook: Codebook
    warnings: tuple[str, ...]

    def summary(self) -> str:
        lines = [
            f"Wrote {self.path}: {len(self.codebook.codes)} codes in "
            f"{len(self.codebook.groups)} groups (check it with: qcode validate-codebook "
            f"{self.path})."
        ]
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def import_qdc(path: str | Path, out: str | Path) -> WrittenCodebook:
    """Read a QDC (or a QDPX/QDE's CodeBook) and write it as our YAML codebook, checked."""
    path, out = Path(path), Path(out)
    root = codebook_root(path)
    if local(root) == "CodeBook":
        problems = qdc_problems(etree.ElementTree(root))
        if problems and root.tag == _q(CODEBOOK_NS, "CodeBook"):
            # Read what we can, but say the file is not strictly valid.
            problems = [f"not strictly valid QDA-XML ({problems[0]}); read anyway"]
        else:
            problems = []
    else:
        problems = []
    try:
        result = codebook_from_refi(root, path.stem)
    except RefiError as error:
        raise RefiError(error.problem, path) from None
    text = codebook_yaml(result.codebook)
    try:
        parse_codebook(text, str(out))
    except CodebookError as error:  # a bug here, not the user's: say so plainly
        raise RefiError(f"the converted codebook does not load ({error.problem})", path) from None
    write_atomically(out, text.encode("utf-8"))
    return WrittenCodebook(out, result.codebook, tuple(problems + result.warnings))
