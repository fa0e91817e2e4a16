"""QDPX projects: our codings out to NVivo, ATLAS.ti, MAXQDA and QualCoder, and their codings in.

A QDPX is a zip of ``project.qde`` (QDA-XML, ``urn:QDA-XML:project:1.0``) and the sources'
plain text under ``sources/``. What the export writes:

* ``sources/<guid>.txt``: each interview's plain text exactly as the store holds it (UTF-8, LF,
  no BOM), so ``startPosition``/``endPosition`` are offsets in Unicode code points into that
  file, which is how QualCoder and ATLAS.ti count (an LF-only file leaves no CRLF ambiguity);
* Users: every reviewer, plus the machine coder named with its model and codebook hash;
* the codebook (groups as parent codes, see ``pipeline.interop.qdc``);
* Variables and Cases from participant attributes (role, local authority, workstream, network,
  date; never names): one case per interview, or per participant of a group interview;
* one PlainTextSelection per unit and user, holding that user's accepted codings (and, when
  asked, the machine's unreviewed suggestions with score and status in its Description); memos
  become Notes referenced from the selection;
* GUIDs are uuid5 of the project, source, span, code and user, so re-exports are stable; every
  ``project.qde`` is validated against the REFI-QDA schema before anything is written.

The import reads another tool's QDPX (any ``.qde`` name, ``sources/`` in any case, ATLAS.ti's
Sets used as attributes, CRLF sources counted either way) and turns each user's codings into
that reviewer's decisions (``source='import'``): spans that match a unit or cover whole units
code those units; codes are matched by GUID, id or name; anything else is reported, never
invented. A unit a user coded is a unit they reviewed: machine suggestions they did not apply
to it are recorded as rejected, so ``qcode agreement`` can compare them with other reviewers.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from lxml import etree

from pipeline import __version__
from pipeline.codebook import Codebook
from pipeline.decisions import COMPARE_SOURCE, DONE, current_codings, resolve_code
from pipeline.interop import listed
from pipeline.interop.qdc import (
    PROJECT_NS,
    RefiCode,
    RefiError,
    _project_schema,
    _q,
    _text_child,
    child_text,
    children_named,
    code_guid,
    codebook_sets,
    codes_element,
    group_guid,
    guid,
    local,
    norm_guid,
    parse_code_description,
    parse_xml,
    read_codes,
    read_sets,
    serialise,
    write_atomically,
)
from pipeline.store import NewDecision, Store

MACHINE_PREFIX = "qcode machine coder"
# The Description of a selection that holds no coding: its user reviewed the unit and gave it
# no code (kept on a round trip; a unit a user coded nowhere is otherwise unreviewed).
REVIEWED_NO_CODE = "qcode: reviewed, no code"
# Decisions imported for comparison only (a separate coder for 'qcode agreement'): they never
# change the project's codings, reports or sheets unless imported with --adopt.
# Participant attributes that may leave the project: never names, never free-form extras.
VARIABLES = ("role", "local_authority", "workstream", "network", "date")
QUOTE_NAME_CHARS = 100
MAX_LISTED = 20
_GENERIC_NAME = ("quotation ", "selection ", "line:", "coding ")


def _n(tag: str) -> str:
    return _q(PROJECT_NS, tag)


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QdpxExport:
    """What an export wrote, for the CLI to say so."""

    path: Path
    sources: int
    selections: int
    codings: int
    suggestions: int
    notes: int
    reviewers: tuple[str, ...]
    machine_user: str
    cases: int

    def summary(self) -> str:
        who = ", ".join(self.reviewers) or "no reviewers yet"
        extra = f" and {self.suggestions} unreviewed suggestions" if self.suggestions else ""
        return (
            f"Wrote {self.path}: {self.sources} interviews, {self.codings} accepted codings"
            f"{extra} in {self.selections} selections, {self.notes} memos, {self.cases} cases; "
            f"users: {who}, {self.machine_user}. Validated against the REFI-QDA 1.0 schema.\n"
            "Open it in NVivo, ATLAS.ti, MAXQDA or QualCoder with their REFI-QDA project import."
        )


def open_project(path: str | Path) -> Store:
    """Open an existing project store: a wrong path is an error, not a new empty project."""
    path = Path(path)
    if not path.is_file():
        raise RefiError("no project database here: run 'qcode run' first, or pass --store", path)
    return Store(path)


def machine_user_name(store: Store, codebook: Codebook) -> str:
    model = store.manifest().get("model", {}) or {}
    name = str(model.get("name") or "unknown model")
    return f"{MACHINE_PREFIX} ({name}, codebook {codebook.sha256[:12]})"


def project_key(store: Store) -> str:
    """What names this project in every GUID: its first run, which never changes."""
    row = store.db.execute("SELECT run_id FROM runs ORDER BY finished_at, rowid LIMIT 1").fetchone()
    if row is None:
        raise RefiError("the project has no runs yet: run 'qcode run' first", store.path)
    return str(row[0])


def _quote_name(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUOTE_NAME_CHARS else flat[: QUOTE_NAME_CHARS - 1] + "…"


def _memos(resolved: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(unit, reviewer) -> [(memo, time)], each distinct memo once (a sheet row writes its
    memo on every decision of the row)."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    if resolved.empty:
        return out
    live = resolved[(resolved["anchor"] != "orphaned") & (resolved["memo"].fillna("") != "")]
    for row in live.sort_values("decision_id").itertuples():
        entries = out[row.current_unit_id, row.reviewer]
        if row.memo not in [m for m, _ in entries]:
            entries.append((row.memo, str(row.at)))
    return out


@dataclass
class _Selection:
    unit_id: str
    user: str
    codings: list[tuple[str, str]] = field(default_factory=list)  # (code id, time)
    scores: list[tuple[str, float, int]] = field(default_factory=list)  # suggestions
    memos: list[tuple[str, str]] = field(default_factory=list)
    reviewed_no_code: str = ""  # time of the decision, for a unit reviewed with no code


def build_project(
    store: Store, include_suggestions: bool = False
) -> tuple[etree._ElementTree, dict[str, bytes], QdpxExport]:
    """The ``project.qde`` tree, the source files (zip path -> bytes) and the counts."""
    run_id = store.latest_run_id()
    if run_id is None:
        raise RefiError("the project has no runs yet: run 'qcode run' first", store.path)
    key = project_key(store)
    codebook = store.codebook(run_id)
    units = store.units(run_id)
    suggestions = store.suggestions(run_id)
    resolved = store.resolved_decisions(codebook)
    texts = store.transcript_texts()
    attributes = store.transcript_attributes()
    machine = machine_user_name(store, codebook)
    unit_rows = {u.unit_id: u for u in units.itertuples(index=False)}

    selections: dict[tuple[str, str], _Selection] = {}

    def selection(unit_id: str, user: str) -> _Selection:
        return selections.setdefault((unit_id, user), _Selection(unit_id, user))

    if len(resolved) and "source" in resolved.columns:
        resolved = resolved[resolved["source"] != COMPARE_SOURCE]  # not the project's coding
    reviewers = sorted(set(resolved["reviewer"])) if len(resolved) else []
    for reviewer in reviewers:
        mine = current_codings(suggestions, resolved, reviewer)
        for row in mine[mine["status"] == "accepted"].itertuples():
            if row.unit_id in unit_rows:
                selection(row.unit_id, reviewer).codings.append((row.code_id, row.decided_at))
        decided = mine[mine["reviewer"] == reviewer]
        for unit_id, group in decided.groupby("unit_id"):
            if unit_id in unit_rows and not (group["status"] == "accepted").any():
                selection(unit_id, reviewer).reviewed_no_code = str(group["decided_at"].max())
        # A unit marked done with nothing suggested or accepted: "reviewed, no code" too.
        accepted_units = set(mine.loc[mine["status"] == "accepted", "unit_id"])
        marks = resolved[
            (resolved["reviewer"] == reviewer)
            & (resolved["action"] == DONE)
            & (resolved["anchor"] != "orphaned")
        ]
        for unit_id, at in zip(marks["current_unit_id"], marks["at"], strict=True):
            if unit_id in unit_rows and unit_id not in accepted_units:
                chosen = selection(unit_id, reviewer)
                chosen.reviewed_no_code = max(chosen.reviewed_no_code, str(at))
    for (unit_id, reviewer), memos in _memos(resolved).items():
        if unit_id in unit_rows:
            selection(unit_id, reviewer).memos.extend(memos)
    finished = store.db.execute(
        "SELECT finished_at FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()[0]
    n_suggestions = 0
    if include_suggestions:
        state = current_codings(suggestions, resolved)
        for row in state[state["status"] == "suggested"].itertuples():
            chosen = selection(row.unit_id, machine)
            chosen.codings.append((row.code_id, finished))
            chosen.scores.append((row.code_id, float(row.score), int(row.rank)))
            n_suggestions += 1
    users = [*reviewers, machine]
    user_guid = {u: guid("user", key, u) for u in users}

    first = store.db.execute("SELECT MIN(finished_at) FROM runs").fetchone()[0]
    last_decision = store.db.execute("SELECT MAX(at) FROM decisions").fetchone()[0]
    modified = max(str(finished), str(last_decision or ""))
    root = etree.Element(
        _n("Project"),
        nsmap={None: PROJECT_NS},
        name=f"{codebook.name} (qcode)",
        origin=f"qcode {__version__}",
        creatingUserGUID=user_guid[machine],
        creationDateTime=str(first),
        modifyingUserGUID=user_guid[machine],
        modifiedDateTime=modified,
    )
    users_el = etree.SubElement(root, _n("Users"))
    for user in users:
        etree.SubElement(users_el, _n("User"), guid=user_guid[user], name=user)
    book = etree.SubElement(root, _n("CodeBook"))
    book.append(codes_element(codebook, PROJECT_NS))

    transcript_ids = sorted(set(units["transcript_id"]))
    for tid in transcript_ids:
        if tid not in texts:
            raise RefiError(f"interview {tid} has units but no text in the store", store.path)
        if "\r" in texts[tid]:
            raise RefiError(
                f"interview {tid}'s text holds a carriage return; re-run qcode to normalise it",
                store.path,
            )
    values: dict[str, dict[str, str]] = {}  # case key -> variable -> value
    case_sources: dict[str, str] = {}
    case_turns: dict[str, list[tuple[int, int, int, str]]] = {}
    for tid in transcript_ids:
        attrs, participants = attributes.get(tid, ({}, {}))
        mine = units[(units["transcript_id"] == tid) & (units["speaker_kind"] == "participant")]
        speakers = sorted(set(mine["speaker"]))
        if len(speakers) <= 1:
            values[tid] = {k: str(attrs.get(k, "")) for k in VARIABLES if attrs.get(k)}
            case_sources[tid] = tid
            continue
        for speaker in speakers:
            merged = {k: v for k, v in attrs.items() if k != "participants"}
            merged.update(participants.get(speaker, {}))
            case = f"{tid} {speaker}"
            values[case] = {k: str(merged.get(k, "")) for k in VARIABLES if merged.get(k)}
            turns = []
            for turn, group in mine[mine["speaker"] == speaker].groupby("turn_index"):
                turns.append((int(turn), int(group["start"].min()), int(group["end"].max()), tid))
            case_turns[case] = turns
    used = [v for v in VARIABLES if any(v in vals for vals in values.values())]
    variable_guid = {v: guid("variable", key, v) for v in used}
    if used:
        variables_el = etree.SubElement(root, _n("Variables"))
        for variable in used:
            etree.SubElement(
                variables_el,
                _n("Variable"),
                guid=variable_guid[variable],
                name=variable,
                typeOfVariable="Text",
            )
    source_guid = {tid: guid("source", key, tid) for tid in transcript_ids}
    turn_guid = {
        (case, turn): guid("turn", key, tid, str(turn))
        for case, turns in case_turns.items()
        for turn, _s, _e, tid in turns
    }
    if values:
        cases_el = etree.SubElement(root, _n("Cases"))
        for case in sorted(values):
            element = etree.SubElement(
                cases_el, _n("Case"), guid=guid("case", key, case), name=case
            )
            for variable, value in values[case].items():
                holder = etree.SubElement(element, _n("VariableValue"))
                etree.SubElement(holder, _n("VariableRef"), targetGUID=variable_guid[variable])
                _text_child(holder, PROJECT_NS, "TextValue", value)
            if case in case_sources:
                etree.SubElement(
                    element, _n("SourceRef"), targetGUID=source_guid[case_sources[case]]
                )
            for turn, *_ in case_turns.get(case, []):
                etree.SubElement(element, _n("SelectionRef"), targetGUID=turn_guid[case, turn])

    files: dict[str, bytes] = {}
    notes: list[etree._Element] = []
    n_codings = n_selections = 0
    sources_el = etree.SubElement(root, _n("Sources"))
    by_transcript: dict[str, list[_Selection]] = defaultdict(list)
    for chosen in selections.values():
        by_transcript[unit_rows[chosen.unit_id].transcript_id].append(chosen)
    for tid in transcript_ids:
        text = texts[tid]
        sguid = source_guid[tid]
        files[f"sources/{sguid}.txt"] = text.encode("utf-8")
        source = etree.SubElement(
            sources_el,
            _n("TextSource"),
            guid=sguid,
            name=tid,
            plainTextPath=f"internal://{sguid}.txt",
        )
        _text_child(source, PROJECT_NS, "Description", f"Interview {tid}, as coded in qcode.")
        items: list[tuple[int, int, str, etree._Element]] = []
        for chosen in by_transcript.get(tid, []):
            unit = unit_rows[chosen.unit_id]
            start, end = int(unit.start), int(unit.end)
            if text[start:end] != unit.text:
                raise RefiError(
                    f"unit {unit.unit_id} of {tid} no longer matches its text; re-run qcode",
                    store.path,
                )
            where = (tid, str(start), str(end), chosen.user)
            element = etree.Element(
                _n("PlainTextSelection"),
                guid=guid("selection", key, *where),
                name=_quote_name(unit.text),
                startPosition=str(start),
                endPosition=str(end),
                creatingUser=user_guid[chosen.user],
            )
            times = [t for _c, t in chosen.codings] + [t for _m, t in chosen.memos]
            times += [chosen.reviewed_no_code] if chosen.reviewed_no_code else []
            if times:
                element.set("creationDateTime", min(times))
            if chosen.scores:
                listed = "; ".join(
                    f"{code} score {score:.3f} (rank {rank})"
                    for code, score, rank in sorted(chosen.scores, key=lambda s: s[2])
                )
                _text_child(
                    element,
                    PROJECT_NS,
                    "Description",
                    f"qcode suggestion, status: unreviewed (no person has accepted or rejected "
                    f"it). {listed}",
                )
            elif chosen.reviewed_no_code and not chosen.codings:
                _text_child(element, PROJECT_NS, "Description", REVIEWED_NO_CODE)
            for code_id, at in sorted(chosen.codings):
                coding = etree.SubElement(
                    element,
                    _n("Coding"),
                    guid=guid("coding", key, *where, code_id),
                    creatingUser=user_guid[chosen.user],
                    creationDateTime=at,
                )
                etree.SubElement(coding, _n("CodeRef"), targetGUID=code_guid(codebook, code_id))
                n_codings += chosen.user != machine
            for memo, at in chosen.memos:
                note_guid = guid("note", key, *where, hashlib.sha256(memo.encode()).hexdigest())
                etree.SubElement(element, _n("NoteRef"), targetGUID=note_guid)
                note = etree.Element(
                    _n("Note"),
                    guid=note_guid,
                    name=f"Memo by {chosen.user} on {tid} [{start}-{end}]",
                    creatingUser=user_guid[chosen.user],
                    creationDateTime=at,
                )
                _text_child(note, PROJECT_NS, "PlainTextContent", memo)
                notes.append(note)
            items.append((start, end, chosen.user, element))
            n_selections += 1
        for case, turns in case_turns.items():
            speaker = case.removeprefix(f"{tid} ")
            for turn, start, end, turn_tid in turns:
                if turn_tid != tid:
                    continue
                element = etree.Element(
                    _n("PlainTextSelection"),
                    guid=turn_guid[case, turn],
                    name=f"{speaker}, turn {turn}",
                    startPosition=str(start),
                    endPosition=str(end),
                )
                items.append((start, end, "", element))
        for *_, element in sorted(items, key=lambda i: (i[0], i[1], i[2])):
            source.append(element)
    if notes:
        notes_el = etree.SubElement(root, _n("Notes"))
        notes_el.extend(notes)
    sets_el = etree.SubElement(root, _n("Sets"))
    sets_el.extend(codebook_sets(codebook, PROJECT_NS, "targetGUID"))
    _text_child(
        root,
        PROJECT_NS,
        "Description",
        f"Exported by qcode {__version__} from run {run_id}. Codebook: {codebook.name} "
        f"{codebook.version} (sha256 {codebook.sha256[:12]}). Positions are Unicode code points "
        "into the LF-only UTF-8 texts under sources/. Each reviewer is a user; the machine "
        f"coder is '{machine}'.",
    )
    summary = QdpxExport(
        path=Path(),
        sources=len(transcript_ids),
        selections=n_selections,
        codings=n_codings,
        suggestions=n_suggestions,
        notes=len(notes),
        reviewers=tuple(u for u in users if u != machine),
        machine_user=machine,
        cases=len(values),
    )
    return etree.ElementTree(root), files, summary


def project_problems(tree: etree._ElementTree, files: dict[str, bytes]) -> list[str]:
    """Schema errors plus the rules the schema only states in comments: a TextSource has
    PlainTextContent or plainTextPath (not both), GUIDs are unique, references point at
    something, and every selection lies inside its source text."""
    schema = _project_schema()
    problems = (
        [] if schema.validate(tree) else [f"line {e.line}: {e.message}" for e in schema.error_log]
    )
    root = tree.getroot()
    seen: dict[str, int] = defaultdict(int)
    for element in root.iter():
        if isinstance(element.tag, str) and element.get("guid"):
            seen[norm_guid(element.get("guid"))] += 1
    problems += [f"GUID {g} is used {n} times" for g, n in seen.items() if n > 1]
    for element in root.iter():
        target = element.get("targetGUID") if isinstance(element.tag, str) else None
        if target is not None and norm_guid(target) not in seen:
            problems.append(f"{local(element)} points at {target}, which is not in the project")
    for source in root.iter(_n("TextSource"), _n("Note")):
        inline = children_named(source, "PlainTextContent")
        path = source.get("plainTextPath")
        if bool(inline) == bool(path):
            problems.append(
                f"{local(source)} '{source.get('name')}' must have PlainTextContent or "
                "plainTextPath, not both or neither"
            )
        if path and path.startswith("internal://"):
            data = files.get("sources/" + path.removeprefix("internal://"))
            if data is None:
                problems.append(f"{path} is not in the sources folder")
                continue
            length = len(data.decode("utf-8"))
            for selection in children_named(source, "PlainTextSelection"):
                start = int(selection.get("startPosition", -1))
                end = int(selection.get("endPosition", -1))
                if not 0 <= start <= end <= length:
                    problems.append(
                        f"selection {selection.get('guid')} [{start}, {end}) lies outside "
                        f"'{source.get('name')}' ({length} characters)"
                    )
    return problems


def qdpx_bytes(tree: etree._ElementTree, files: dict[str, bytes], stamp: str) -> bytes:
    """The zip: ``project.qde`` then ``sources/``; fixed member times, so an unchanged project
    exports to the same bytes."""
    try:
        moment = datetime.fromisoformat(stamp)
        when = (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, 0)
    except ValueError:
        when = (1980, 1, 1, 0, 0, 0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [("project.qde", serialise(tree)), *sorted(files.items())]:
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def export_qdpx(store: Store, out: str | Path, include_suggestions: bool = False) -> QdpxExport:
    """Write the project as a QDPX; refuse (nothing written) unless it is valid."""
    out = Path(out)
    if out.suffix.lower() != ".qdpx":
        raise RefiError("a REFI-QDA project file must end in .qdpx", out)
    tree, files, summary = build_project(store, include_suggestions)
    problems = project_problems(tree, files)
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED])
        raise RefiError(f"the export is not valid REFI-QDA; nothing was written:\n  {shown}", out)
    write_atomically(out, qdpx_bytes(tree, files, tree.getroot().get("modifiedDateTime", "")))
    return QdpxExport(**{**summary.__dict__, "path": out})


# -- reading a QDPX -----------------------------------------------------------------------------


@dataclass
class RefiSelection:
    guid: str
    start: int
    end: int
    name: str
    description: str
    codings: list[tuple[str, str]]  # (code guid, user guid)
    notes: list[str]
    user: str  # the selection's creatingUser


@dataclass
class RefiSource:
    guid: str
    name: str
    text: str | None  # as the file holds it (CRLF kept), BOM removed; None if not in the file
    selections: list[RefiSelection]
    attributes: dict[str, str]
    whole_source_codings: int = 0


@dataclass
class RefiProject:
    """What a QDPX (or bare .qde) holds that an import needs."""

    path: Path
    origin: str
    users: dict[str, str]  # guid -> name
    codes: list[RefiCode]
    sources: list[RefiSource]
    other_sources: dict[str, int]  # kind -> how many (PDF, picture, audio, video)
    other_codings: int  # codings on non-text sources
    creating_user: str

    def code_nodes(self) -> list[RefiCode]:
        return [n for c in self.codes for n in c.walk()]


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _members(archive: zipfile.ZipFile) -> dict[str, str]:
    """lower-case path -> real path, for case-insensitive look-ups (Sources/ vs sources/)."""
    return {n.lower().replace("\\", "/"): n for n in archive.namelist() if not n.endswith("/")}


def read_qdpx(path: str | Path) -> RefiProject:
    """Parse a QDPX (zip) or a bare .qde: users, codes, text sources with their selections,
    attributes from Cases, VariableValues and ATLAS.ti-style Sets ("age: 67")."""
    path = Path(path)
    if not path.is_file():
        raise RefiError("no such file", path)
    archive = None
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = _members(archive)
        qde = sorted(
            (n for n in members if n.endswith(".qde")),
            key=lambda n: (n.count("/"), n != "project.qde", n),
        )
        if not qde:
            raise RefiError("this zip holds no .qde project file: is it a QDPX?", path)
        data = archive.read(members[qde[0]])
    else:
        members = {}
        data = path.read_bytes()
    try:
        root = parse_xml(data, path).getroot()
        if local(root) != "Project":
            raise RefiError(f"not a REFI-QDA project (root element {local(root)})", path)

        def read_text(reference: str | None) -> str | None:
            if not reference or archive is None:
                return None
            if reference.startswith("internal://"):
                wanted = "sources/" + reference.removeprefix("internal://").lower()
                real = members.get(wanted)
                if real is None:  # some tools nest the folder one level down
                    real = next((r for n, r in members.items() if n.endswith("/" + wanted)), None)
                return _decode(archive.read(real)) if real else None
            return None

        users = {
            norm_guid(u.get("guid")): (u.get("name") or u.get("id") or "").strip()
            for users_el in children_named(root, "Users")
            for u in children_named(users_el, "User")
        }
        codes: list[RefiCode] = []
        for book in children_named(root, "CodeBook"):
            for codes_el in children_named(book, "Codes"):
                codes = read_codes(codes_el)
        notes = {}
        for notes_el in children_named(root, "Notes"):
            for note in children_named(notes_el, "Note"):
                text = child_text(note, "PlainTextContent")
                if text is None:
                    text = read_text(note.get("plainTextPath")) or ""
                notes[norm_guid(note.get("guid"))] = text.strip()
        linked: dict[str, list[str]] = defaultdict(list)  # NVivo links notes to selections
        for links in children_named(root, "Links"):
            for link in children_named(links, "Link"):
                origin, target = (
                    norm_guid(link.get("originGUID")),
                    norm_guid(link.get("targetGUID")),
                )
                if origin in notes:
                    linked[target].append(notes[origin])
                elif target in notes:
                    linked[origin].append(notes[target])
        attributes: dict[str, dict[str, str]] = defaultdict(dict)
        variables = {
            norm_guid(v.get("guid")): (v.get("name") or "").strip()
            for variables_el in children_named(root, "Variables")
            for v in children_named(variables_el, "Variable")
        }

        def value_of(holder: etree._Element) -> tuple[str, str] | None:
            refs = children_named(holder, "VariableRef")
            if not refs:
                return None
            name = variables.get(norm_guid(refs[0].get("targetGUID")))
            found = [c for c in holder if local(c).endswith("Value") and local(c) != "VariableRef"]
            if not name or not found:
                return None
            return name, (found[0].text or "").strip()

        for cases in children_named(root, "Cases"):
            for case in children_named(cases, "Case"):
                pairs = [p for p in map(value_of, children_named(case, "VariableValue")) if p]
                for ref in children_named(case, "SourceRef"):
                    attributes[norm_guid(ref.get("targetGUID"))].update(dict(pairs))
        for _guid, name, _description, _codes, member_sources in read_sets(root):
            key, colon, value = name.partition(":")
            if colon and key.strip() and value.strip():
                for member in member_sources:
                    attributes[member][key.strip()] = value.strip()
        sources: list[RefiSource] = []
        other: dict[str, int] = defaultdict(int)
        other_codings = 0
        for sources_el in children_named(root, "Sources"):
            for element in sources_el:
                kind = local(element)
                if kind != "TextSource":
                    if kind:
                        other[kind] += 1
                        other_codings += sum(1 for _ in element.iter(_n("Coding")))
                    continue
                sguid = norm_guid(element.get("guid"))
                inline = child_text(element, "PlainTextContent")
                text = inline if inline is not None else read_text(element.get("plainTextPath"))
                own = dict(attributes.get(sguid, {}))
                own.update(
                    dict(p for p in map(value_of, children_named(element, "VariableValue")) if p)
                )
                selections = []
                for sel in children_named(element, "PlainTextSelection"):
                    sel_guid = norm_guid(sel.get("guid"))
                    selections.append(
                        RefiSelection(
                            guid=sel_guid,
                            start=int(sel.get("startPosition", "0")),
                            end=int(sel.get("endPosition", "0")),
                            name=sel.get("name") or "",
                            description=(child_text(sel, "Description") or "").strip(),
                            codings=[
                                (
                                    norm_guid(ref.get("targetGUID")),
                                    norm_guid(coding.get("creatingUser")),
                                )
                                for coding in children_named(sel, "Coding")
                                for ref in children_named(coding, "CodeRef")
                            ],
                            notes=[
                                notes[norm_guid(r.get("targetGUID"))]
                                for r in children_named(sel, "NoteRef")
                                if notes.get(norm_guid(r.get("targetGUID")))
                            ]
                            + linked.get(sel_guid, []),
                            user=norm_guid(sel.get("creatingUser")),
                        )
                    )
                sources.append(
                    RefiSource(
                        guid=sguid,
                        name=(element.get("name") or "").strip(),
                        text=text,
                        selections=selections,
                        attributes=own,
                        whole_source_codings=len(children_named(element, "Coding")),
                    )
                )
    except (ValueError, KeyError) as error:
        raise RefiError(f"cannot read the project ({error})", path) from None
    finally:
        if archive is not None:
            archive.close()
    return RefiProject(
        path=path,
        origin=root.get("origin") or "",
        users=users,
        codes=codes,
        sources=sources,
        other_sources=dict(other),
        other_codings=other_codings,
        creating_user=norm_guid(root.get("creatingUserGUID")),
    )


# -- offsets ------------------------------------------------------------------------------------


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def lf_position(raw: str, position: int, counting: str) -> int:
    """A REFI position in ``raw`` (the file's text) as an index into its LF-only form.

    ``counting``: ``lf`` (code points, a CRLF counted once: ATLAS.ti, MAXQDA, QualCoder, qcode),
    ``crlf`` (code points, CRLF counted twice: NVivo on Windows files) or ``utf16`` (UTF-16
    code units, CRLF twice: tools built on .NET or Java strings)."""
    if counting == "lf":
        return position
    if counting == "utf16":
        units = 0
        for index, char in enumerate(raw):
            if units >= position:
                position = index
                break
            units += 2 if ord(char) > 0xFFFF else 1
        else:
            position = len(raw) + max(0, position - units)
    return position - raw.count("\r\n", 0, position)


def _hint(name: str) -> str | None:
    """The quoted text a selection's name starts with (ATLAS.ti names quotations so), if any."""
    flat = " ".join(name.split())
    if len(flat) < 12 or flat.lower().startswith(_GENERIC_NAME):
        return None
    return flat.rstrip("…").rstrip(".").rstrip() if flat.endswith("…") else flat


def choose_counting(source: RefiSource, origin: str) -> str:
    """How this source's positions count characters, decided by the selections' names where
    they quote the text, else by the tool: NVivo counts CRLF twice, the others once."""
    raw = source.text or ""
    if "\r\n" not in raw and not any(ord(c) > 0xFFFF for c in raw):
        return "lf"
    default = "crlf" if "nvivo" in origin.lower() else "lf"
    lf_text = _lf(raw)
    scores = {}
    for counting in ("lf", "crlf", "utf16"):
        hits = 0
        for sel in source.selections:
            hint = _hint(sel.name)
            if hint is None:
                continue
            start = lf_position(raw, sel.start, counting)
            end = lf_position(raw, sel.end, counting)
            if " ".join(lf_text[start:end].split()).startswith(hint):
                hits += 1
        scores[counting] = hits
    best = max(scores.values())
    if best == 0 or scores[default] == best:
        return default
    return max(scores, key=lambda c: (scores[c], c == default))


# -- importing ----------------------------------------------------------------------------------


@dataclass
class QdpxImportReport:
    """What an import did (or, with --dry-run, would do); ``summary()`` is what the CLI says."""

    path: Path
    dry_run: bool
    origin: str = ""
    adopted: bool = False
    reviewed_no_code: int = 0
    text_sources: int = 0
    matched: list[tuple[str, str, str]] = field(default_factory=list)  # (name, interview, how)
    unmatched_sources: list[str] = field(default_factory=list)
    countings: list[str] = field(default_factory=list)
    selections: int = 0
    codings_read: int = 0
    codings_mapped: int = 0
    units_decided: int = 0
    written: dict[str, dict[str, int]] = field(default_factory=dict)  # reviewer -> action -> n
    unknown_codes: dict[str, int] = field(default_factory=dict)
    group_codes: dict[str, int] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)
    partly_covered: int = 0
    machine_skipped: int = 0
    other_sources: dict[str, int] = field(default_factory=dict)
    other_codings: int = 0
    attribute_notes: list[str] = field(default_factory=list)
    up_to_date: int = 0

    def summary(self) -> str:
        verb = "Would write" if self.dry_run else "Wrote"
        total = sum(sum(a.values()) for a in self.written.values())
        lines = [
            f"Read {self.path} ({self.origin or 'unknown tool'}): {len(self.matched)} of "
            f"{self.text_sources} text sources matched, "
            f"{self.selections} selections, {self.codings_read} codings "
            f"({self.codings_mapped} on units of this project).",
            f"{verb} {total} decisions on {self.units_decided} units"
            + (" (dry run: nothing was written)." if self.dry_run else "."),
            (
                "Adopted: they are the project's own decisions now (source 'import')."
                if self.adopted
                else "For comparison only: each user is a separate coder for 'qcode agreement'; "
                "the project's codings and reports do not change (import with --adopt to make "
                "them the project's own decisions)."
            ),
        ]
        if self.reviewed_no_code:
            lines.append(f"{self.reviewed_no_code} units were reviewed with no code.")
        for reviewer, actions in sorted(self.written.items()):
            counts = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
            lines.append(f"  {reviewer}: {counts}")
        if self.up_to_date:
            lines.append(f"{self.up_to_date} units were already up to date (imported before).")
        lines += [
            f"  '{name}' is interview {tid} ({how})"
            for name, tid, how in self.matched[:MAX_LISTED]
            if name != tid
        ]
        for line in self.countings:
            lines.append(f"  offsets: {line}")
        if self.unmatched_sources:
            lines.append("Sources that match no interview in the project (not imported):")
            lines += [f"  {s}" for s in self.unmatched_sources[:MAX_LISTED]]
        if self.unknown_codes:
            lines.append(
                "Codes not in the codebook (their codings were not imported; add them "
                "to the codebook or rename them in the tool):"
            )
            lines += [f"  '{c}': {n} codings" for c, n in sorted(self.unknown_codes.items())]
        if self.group_codes:
            lines.append("Codings on groups, which cannot be coded (not imported):")
            lines += [f"  '{c}': {n} codings" for c, n in sorted(self.group_codes.items())]
        if self.unplaced:
            lines.append(
                f"{len(self.unplaced)} coded spans neither match a unit nor cover whole units "
                "(not imported; code whole sentences, or re-run with --unit turn):"
            )
            lines += listed(self.unplaced, MAX_LISTED)
        if self.partly_covered:
            lines.append(
                f"{self.partly_covered} units were only partly inside a coded span and were not "
                "coded by it."
            )
        if self.machine_skipped:
            lines.append(
                f"{self.machine_skipped} codings by qcode's machine coder were skipped (they are "
                "suggestions, not decisions)."
            )
        if self.other_codings or self.other_sources:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.other_sources.items()))
            lines.append(f"Not text, not imported: {kinds} ({self.other_codings} codings).")
        lines += [f"Attributes: {a}" for a in self.attribute_notes]
        return "\n".join(lines)


def _norm_name(text: str) -> str:
    """For matching names: case, spacing and Unicode composition (macOS writes NFD) ignored."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    return stem if dot and 1 <= len(suffix) <= 5 and stem else base


def match_sources(
    project: RefiProject, texts: dict[str, str], paths: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """source guid -> (transcript id, how): by name (interview id or file name), else by text."""
    names: dict[str, str] = {}
    for tid in texts:
        for candidate in (tid, _stem(tid), paths.get(tid, ""), _stem(paths.get(tid, ""))):
            if candidate:
                names.setdefault(_norm_name(candidate), tid)
    out: dict[str, tuple[str, str]] = {}
    for source in project.sources:
        tid = names.get(_norm_name(source.name)) or names.get(_norm_name(_stem(source.name)))
        if tid is not None:
            out[source.guid] = (tid, "by name")
            continue
        if source.text is None:
            continue
        theirs = _lf(source.text).strip()
        for tid, ours in texts.items():
            if theirs and (theirs == ours.strip() or ours.strip() in theirs):
                out[source.guid] = (tid, "by text")
                break
    return out


def map_codes(project: RefiProject, codebook: Codebook) -> tuple[dict[str, str], set[str]]:
    """REFI code guid -> our code id, and the guids of our groups (not codable)."""
    by_guid = {code_guid(codebook, c.id): c.id for c in codebook.codes}
    groups = {group_guid(codebook, g.id) for g in codebook.groups}
    by_label = {_norm_name(c.label): c.id for c in codebook.codes}
    out: dict[str, str] = {}
    for node in project.code_nodes():
        if node.guid in by_guid:
            out[node.guid] = by_guid[node.guid]
            continue
        fields = parse_code_description(node.description)
        candidates = [str(fields.get("id") or ""), node.name, node.name.rpartition("::")[2]]
        for candidate in candidates:
            if not candidate:
                continue
            found = resolve_code(candidate.strip(), codebook) or by_label.get(_norm_name(candidate))
            if found:
                out[node.guid] = found
                break
    return out, groups


@dataclass
class _Located:
    transcript_id: str
    start: int
    end: int
    text: str


def _locate(source: RefiSource, sel: RefiSelection, counting: str, ours: str) -> _Located | str:
    """The selection as a span of our transcript text, or why it cannot be placed."""
    if source.text is not None:
        raw = source.text
        theirs = _lf(raw)
        start, end = lf_position(raw, sel.start, counting), lf_position(raw, sel.end, counting)
        if not 0 <= start <= end <= len(theirs):
            return f"[{sel.start}, {sel.end}) lies outside the source text"
        quote = theirs[start:end]
        if theirs == ours:
            found = start
        elif ours in theirs and theirs.count(ours) == 1:
            found = start - theirs.index(ours)
            if (
                not 0 <= found <= len(ours) - len(quote)
                or ours[found : found + len(quote)] != quote
            ):
                found = -1
        else:
            found = -1
        if found < 0:
            positions = []
            at = ours.find(quote)
            while at != -1 and quote.strip():
                positions.append(at)
                at = ours.find(quote, at + 1)
            if not positions:
                return f'"{_quote_name(quote)}" is not in the interview text'
            found = min(positions, key=lambda p: abs(p - start))
        start, end = found, found + len(quote)
    else:
        hint = _hint(sel.name)
        window = " ".join(ours[sel.start : sel.end].split())
        if hint is None or not window.startswith(hint):
            return "the file carries no source text to check this span against"
        start, end = sel.start, sel.end
    while start < end and ours[start].isspace():
        start += 1
    while end > start and ours[end - 1].isspace():
        end -= 1
    if start == end:
        return "the span holds no text"
    return _Located("", start, end, ours[start:end])


def import_qdpx(
    store: Store, path: str | Path, dry_run: bool = False, adopt: bool = False
) -> QdpxImportReport:
    """Record each tool user's codings as a coder's decisions.

    By default for comparison: each user becomes a separate coder, "USER (FILE NAME)", with
    ``source='compare'``, which ``qcode agreement`` compares and the project's codings, reports
    and sheets leave out. With ``adopt`` they become the project's own decisions under the
    user's name (``source='import'``).

    A unit a user coded gets exactly the codes they gave it: codes the machine suggested are
    accepted, others added, suggestions they left off rejected, and codes an earlier import
    gave it removed; a selection marked "reviewed, no code" rejects them all. Importing the same
    file twice writes nothing the second time."""
    path = Path(path)
    project = read_qdpx(path)
    run_id = store.latest_run_id()
    if run_id is None:
        raise RefiError("the project has no runs yet: run 'qcode run' first", store.path)
    codebook = store.codebook(run_id)
    units = store.units(run_id)
    suggestions = store.suggestions(run_id)
    texts = {t: x for t, x in store.transcript_texts().items() if t in set(units["transcript_id"])}
    paths = dict(store.db.execute("SELECT transcript_id, source_path FROM transcripts"))
    report = QdpxImportReport(path, dry_run, origin=project.origin, adopted=adopt)
    report.other_sources = project.other_sources
    report.text_sources = len(project.sources)
    report.other_codings = project.other_codings
    matched = match_sources(project, texts, paths)
    code_map, group_guids = map_codes(project, codebook)
    code_names = {n.guid: n.name for n in project.code_nodes()}
    our_attrs = store.transcript_attributes()
    codable = units[units["codable"]]
    by_transcript = {t: f for t, f in codable.groupby("transcript_id")}
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)  # (reviewer, unit) -> codes
    memos: dict[tuple[str, str], list[str]] = defaultdict(list)

    def coder(user: str) -> str:
        """The coder a tool user's codings are recorded as."""
        return user if adopt else f"{user} ({path.name})"

    for source in project.sources:
        report.selections += len(source.selections)
        n_codings = sum(len(s.codings) for s in source.selections)
        report.codings_read += n_codings
        if source.guid not in matched:
            if n_codings or source.text:
                report.unmatched_sources.append(
                    f"'{source.name}' ({n_codings} codings)"
                    + ("" if source.text is not None else "; its text is not in the file")
                )
            continue
        tid, how = matched[source.guid]
        report.matched.append((source.name, tid, how))
        if source.whole_source_codings:
            report.unplaced.append(
                f"{tid}: {source.whole_source_codings} codings of the whole source (code "
                "passages instead)"
            )
        counting = choose_counting(source, project.origin)
        if counting != "lf":
            report.countings.append(
                f"'{source.name}': positions count "
                + ("CRLF as two characters" if counting == "crlf" else "UTF-16 code units")
            )
        ours_attrs = our_attrs.get(tid, ({}, {}))[0]
        for key, value in sorted(source.attributes.items()):
            ours = ours_attrs.get(key.lower().replace(" ", "_"))
            if ours is not None and str(ours) != value:
                report.attribute_notes.append(
                    f"{tid}: {key} is '{value}' in the file, '{ours}' here (kept as here)"
                )
        frame = by_transcript.get(tid)
        for sel in source.selections:
            no_code = not sel.codings and sel.description.strip() == REVIEWED_NO_CODE
            if not sel.codings and not no_code:
                continue
            located = _locate(source, sel, counting, texts[tid])
            if isinstance(located, str):
                report.unplaced.append(f"{tid} [{sel.start}, {sel.end}): {located}")
                continue
            if frame is None:
                report.unplaced.append(f"{tid}: the interview has no codable units")
                continue
            exact = frame[(frame["start"] == located.start) & (frame["end"] == located.end)]
            covered = frame[(frame["start"] >= located.start) & (frame["end"] <= located.end)]
            hit = exact if len(exact) else covered
            if hit.empty:
                report.unplaced.append(
                    f'{tid} [{located.start}, {located.end}) "{_quote_name(located.text)}"'
                )
                continue
            partly = frame[(frame["start"] < located.end) & (frame["end"] > located.start)]
            report.partly_covered += len(partly) - len(hit)
            if no_code:
                user = project.users.get(sel.user or project.creating_user, "")
                if user and not user.startswith(MACHINE_PREFIX):
                    for unit_id in hit["unit_id"]:
                        wanted[coder(user), unit_id] |= set()
                        report.reviewed_no_code += 1
                continue
            for code_guid_, user_guid in sel.codings:
                user = project.users.get(user_guid or sel.user or project.creating_user, "")
                reviewer = user or f"user {(user_guid or 'unknown')[:8]}"
                if reviewer.startswith(MACHINE_PREFIX):
                    report.machine_skipped += 1
                    continue
                if code_guid_ in group_guids:
                    name = code_names.get(code_guid_, code_guid_)
                    report.group_codes[name] = report.group_codes.get(name, 0) + 1
                    continue
                code_id = code_map.get(code_guid_)
                if code_id is None:
                    name = code_names.get(code_guid_, f"GUID {code_guid_}")
                    report.unknown_codes[name] = report.unknown_codes.get(name, 0) + 1
                    continue
                report.codings_mapped += 1
                reviewer = coder(reviewer)
                for unit_id in hit["unit_id"]:
                    wanted[reviewer, unit_id].add(code_id)
                    for memo in [sel.description, *sel.notes]:
                        if memo and memo not in memos[reviewer, unit_id]:
                            memos[reviewer, unit_id].append(memo)
    source_kind = "import" if adopt else COMPARE_SOURCE
    plans = _plan_decisions(store, codebook, suggestions, wanted, memos, source_kind)
    for reviewer, decisions in plans.items():
        if not decisions:
            continue
        counts: dict[str, int] = defaultdict(int)
        for d in decisions:
            counts[d.action] += 1
        report.written[reviewer] = dict(counts)
        report.units_decided += len({d.unit_id for d in decisions})
        if not dry_run:
            store.decide(reviewer, decisions, source=source_kind)
    decided = {(r, d.unit_id) for r, ds in plans.items() for d in ds}
    report.up_to_date = len(set(wanted) - decided)
    return report


def _plan_decisions(
    store: Store,
    codebook: Codebook,
    suggestions: pd.DataFrame,
    wanted: dict[tuple[str, str], set[str]],
    memos: dict[tuple[str, str], list[str]],
    source: str = "import",
) -> dict[str, list[NewDecision]]:
    """Per reviewer, the decisions that make each unit hold exactly the imported codes (the
    reviewer's earlier decisions from ``source`` count; comparison and own stay apart)."""
    resolved = store.resolved_decisions(codebook)
    if len(resolved):
        ours = resolved["source"] == COMPARE_SOURCE
        resolved = resolved[ours if source == COMPARE_SOURCE else ~ours]
    suggested: dict[str, set[str]] = defaultdict(set)
    for unit_id, code_id in suggestions[["unit_id", "code_id"]].itertuples(index=False):
        suggested[unit_id].add(code_id)
    plans: dict[str, list[NewDecision]] = defaultdict(list)
    for reviewer in sorted({r for r, _ in wanted}):
        state = current_codings(suggestions, resolved, reviewer)
        mine = state[state["reviewer"] == reviewer]
        accepted: dict[str, set[str]] = defaultdict(set)
        rejected: dict[str, set[str]] = defaultdict(set)
        for unit_id, code_id, status in mine[["unit_id", "code_id", "status"]].itertuples(
            index=False
        ):
            (accepted if status == "accepted" else rejected)[unit_id].add(code_id)
        old_memos: dict[str, set[str]] = defaultdict(set)
        marked_done: set[str] = set()
        if len(resolved):
            mine_all = resolved[(resolved["reviewer"] == reviewer) & (resolved["action"] == DONE)]
            marked_done = set(mine_all["current_unit_id"].dropna())
            for row in resolved[resolved["reviewer"] == reviewer].itertuples():
                if row.current_unit_id:
                    old_memos[row.current_unit_id].add(row.memo)
        for (who, unit_id), codes in sorted(wanted.items()):
            if who != reviewer:
                continue
            memo = "\n\n".join(m for m in memos.get((who, unit_id), []))
            machine = suggested.get(unit_id, set())
            decisions = [
                NewDecision(unit_id, c, "accept" if c in machine else "add", memo)
                for c in sorted(codes - accepted[unit_id])
            ]
            decisions += [
                NewDecision(unit_id, c, "reject", memo)
                for c in sorted(machine - codes - rejected[unit_id])
                if c not in accepted[unit_id]
            ]
            decisions += [
                NewDecision(unit_id, c, "reject" if c in machine else "remove", memo)
                for c in sorted(accepted[unit_id] - codes)
            ]
            if not codes and not machine and unit_id not in marked_done:
                decisions.append(NewDecision(unit_id, "", DONE, memo))  # reviewed, no code
            if not decisions and memo and memo not in old_memos[unit_id]:
                decisions = [NewDecision(unit_id, "", "note", memo)]
            plans[reviewer].extend(decisions)
    return plans
