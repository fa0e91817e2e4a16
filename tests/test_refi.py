"""REFI-QDA: QDC codebooks and QDPX projects out and in, checked against the schema, against
ATLAS.ti's own files and through an independent REFI reader/writer (pyrefiqda)."""

from __future__ import annotations

import shutil
import unicodedata
import uuid
import zipfile
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.codebook import load_codebook, parse_codebook
from pipeline.decisions import current_codings, review_counts, reviewed_units
from pipeline.interop import refi as refi_module
from pipeline.interop.qdc import (
    CODEBOOK_NS,
    RefiError,
    code_guid,
    export_qdc,
    import_qdc,
    qdc_problems,
)
from pipeline.interop.refi import (
    MACHINE_PREFIX,
    REVIEWED_NO_CODE,
    export_qdpx,
    import_qdpx,
    lf_position,
    read_qdpx,
)
from pipeline.store import NewDecision, Store
from tests.conftest import record_real_run

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "refi"
SCHEMA = ROOT / "pipeline" / "interop" / "schemas" / "Project-mrt2019.xsd"
NS = {"q": "urn:QDA-XML:project:1.0"}
PROJECT_ORDER = [
    "Users",
    "CodeBook",
    "Variables",
    "Cases",
    "Sources",
    "Notes",
    "Links",
    "Sets",
    "Graphs",
    "Description",
]
runner = CliRunner()

UNICODE_INTERVIEW = (
    "---\ninterview_id: T-01\nrole: Head teacher\nlocal_authority: LA-A\nworkstream: CLN\n"
    "network: Café network\ndate: 2022-03-01\n---\n\n"
    "Interviewer: How has the network helped your school this year?\n\n"
    "Participant: The café meetings built real trust between heads — we say “what went wrong” "
    "openly now 🙂. Release time is the problem, though, because cover for teachers is so "
    "scarce.\n\n"
    "Our 👩🏽‍🏫 stickers made the sessions fun, and the résumé of each "
    "meeting was shared with everyone afterwards.\n"
)

CRLF_INTERVIEW = (
    "---\r\ninterview_id: T-02\r\nrole: Quality improvement officer\r\nlocal_authority: LA-B\r\n"
    "workstream: LEI\r\nnetwork: QIO network\r\ndate: 2022-04-02\r\n---\r\n\r\n"
    "Interviewer: What got in the way of the network?\r\n\r\n"
    "Participant: Honestly there was never enough time to meet, and people drifted away.\r\n"
    "We tried to keep going, but the meetings got shorter every term.\r\n\r\n"
    "Interviewer: And what helped?\r\n\r\n"
    "Participant: Sharing our plans openly built trust across the authorities, which mattered "
    "a lot.\r\n"
)

GROUP_INTERVIEW = """---
interview_id: T-03
workstream: CLTA
network: Early level network
participants:
  P1: {role: Class teacher, local_authority: LA-C, workstream: CLTA}
  P2: {role: Depute head teacher, local_authority: LA-D, workstream: CLTA}
---

Interviewer: What made the collaboration work for you both?

P1: Honestly, trust — knowing nobody would judge us 😅 when an idea fell flat in class.

P2: Time was the barrier for us; we’d no cover to release staff, so the network stalled.

P1: The shared planning days were the best bit of the whole year for me.
"""


def _write_transcripts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t01_unicode.md").write_text(UNICODE_INTERVIEW, encoding="utf-8")
    # A Windows file: a BOM and CRLF line ends; ingest keeps offsets into its LF text.
    (folder / "t02_windows.txt").write_bytes(b"\xef\xbb\xbf" + CRLF_INTERVIEW.encode("utf-8"))
    (folder / "t03_group.md").write_text(GROUP_INTERVIEW, encoding="utf-8")
    return folder


def _unit(store: Store, transcript_id: str, contains: str):
    units = store.units()
    rows = units[(units["transcript_id"] == transcript_id) & units["text"].str.contains(contains)]
    assert len(rows) == 1, (transcript_id, contains, rows["text"].tolist())
    return rows.iloc[0]


@pytest.fixture(scope="module")
def _tiny_template(tmp_path_factory, nlp, encoder, codebook, embedding_cache):
    """A real project store (real ingest, spaCy, encoder, assignment) over three tiny
    interviews with é, curly quotes, emoji, a CRLF file and a group interview; two reviewers
    have decided on some units, with memos."""
    from pipeline.ingest import read_transcripts

    base = tmp_path_factory.mktemp("refi")
    transcripts, problems = read_transcripts(_write_transcripts(base / "transcripts"))
    assert [t.transcript_id for t in transcripts] == ["T-01", "T-02", "T-03"]
    path = record_real_run(
        base / "project.sqlite", transcripts, problems, nlp, encoder, codebook, embedding_cache
    )
    shutil.copy(path, base / "undecided.sqlite")  # closed first: WAL checkpointed
    with Store(path) as store:
        trust = _unit(store, "T-01", "café meetings")
        stickers = _unit(store, "T-01", "stickers")
        windows = _unit(store, "T-02", "never enough time")
        group = _unit(store, "T-03", "nobody would judge")
        store.decide(
            "ann",
            [
                NewDecision(trust.unit_id, "ts.trust", "add", "Strong “trust” quote 🙂"),
                NewDecision(stickers.unit_id, "process.collaboration_sharing", "add"),
                NewDecision(windows.unit_id, "ts.time_pressure", "add", "CRLF file, é"),
                NewDecision(group.unit_id, "ts.trust", "add"),
            ],
        )
        store.decide("bob", [NewDecision(trust.unit_id, "ts.trust", "add", "agree")])
    return base


@pytest.fixture
def tiny(_tiny_template, tmp_path):
    """Fresh copies: ``decided`` (with ann's and bob's decisions), ``undecided`` (none)."""
    shutil.copy(_tiny_template / "project.sqlite", tmp_path / "decided.sqlite")
    shutil.copy(_tiny_template / "undecided.sqlite", tmp_path / "undecided.sqlite")
    return tmp_path


def _unzip(path: Path) -> tuple[etree._Element, dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    return etree.fromstring(files["project.qde"]), files


def _accepted(store: Store, reviewer: str) -> set[tuple[str, str]]:
    state = current_codings(store.suggestions(), store.resolved_decisions(), reviewer)
    state = state[state["status"] == "accepted"]
    return set(zip(state["unit_id"], state["code_id"], strict=True))


def _texts_by_guid(root: etree._Element, files: dict[str, bytes]) -> dict[str, str]:
    out = {}
    for source in root.iterfind(".//q:TextSource", NS):
        name = source.get("plainTextPath").removeprefix("internal://")
        out[source.get("guid")] = files[f"sources/{name}"].decode("utf-8")
    return out


# -- QDC codebooks ------------------------------------------------------------------------------


def test_qdc_round_trip_loses_nothing(codebook, tmp_path):
    book = codebook.model_copy(
        update={
            "renamed": {
                "ts.old_trust": "ts.trust",
                "process.old_share": "process.collaboration_sharing",
            }
        }
    )
    path = export_qdc(book, tmp_path / "wp.qdc")
    assert qdc_problems(etree.parse(str(path))) == []
    result = import_qdc(path, tmp_path / "back.yaml")
    assert result.warnings == ()
    back = parse_codebook((tmp_path / "back.yaml").read_text(encoding="utf-8"))
    assert back.model_dump(exclude={"path"}) == book.model_dump(exclude={"path"})
    assert back.sha256 == book.sha256


def test_qdc_layout_colours_and_guids(codebook, tmp_path):
    first = export_qdc(codebook, tmp_path / "a.qdc").read_bytes()
    assert export_qdc(codebook, tmp_path / "b.qdc").read_bytes() == first
    assert not first.startswith(b"\xef\xbb\xbf")
    root = etree.fromstring(first)
    top = root.findall(f"{{{CODEBOOK_NS}}}Codes/{{{CODEBOOK_NS}}}Code")
    assert [c.get("name") for c in top] == [g.label for g in codebook.groups]
    assert {c.get("isCodable") for c in top} == {"false"}
    group_colours = [c.get("color") for c in top]
    assert len(set(group_colours)) == len(group_colours)
    trust = root.find(f".//{{{CODEBOOK_NS}}}Code[@guid='{code_guid(codebook, 'ts.trust')}']")
    assert trust.get("isCodable") == "true" and trust.get("name") == codebook.code("ts.trust").label
    description = trust.findtext(f"{{{CODEBOOK_NS}}}Description")
    code = codebook.code("ts.trust")
    assert f"Definition: {code.definition}" in description
    assert f"Include: {code.include}" in description
    assert f"- {code.examples[0]}" in description
    assert "Kind: enabler" in description and "Id: ts.trust" in description
    assert uuid.UUID(trust.get("guid")).version == 5
    # A new code elsewhere leaves every other code's GUID and colour as they were.
    extra = codebook.codes[0].model_copy(update={"id": "structure.new_one", "label": "New one"})
    grown = codebook.model_copy(update={"codes": (*codebook.codes, extra)})
    again = etree.fromstring(export_qdc(grown, tmp_path / "c.qdc").read_bytes())
    before = {c.get("guid"): c.get("color") for c in root.iter(f"{{{CODEBOOK_NS}}}Code")}
    after = {c.get("guid"): c.get("color") for c in again.iter(f"{{{CODEBOOK_NS}}}Code")}
    assert before.items() <= after.items()


def test_qdc_import_from_atlas_nests_and_guesses_with_warnings(tmp_path):
    result = import_qdc(DATA / "atlas_sample.qde", tmp_path / "atlas.yaml")
    book = load_codebook(tmp_path / "atlas.yaml")
    assert len(book.codes) == 14
    coke = [c for c in book.codes if c.group == "coke"]
    assert {c.label for c in coke} == {"Coke", "full-fat Coke", "diet Coke"}
    assert book.code("coke.diet_coke").definition == "non sucré"
    assert {c.kind for c in book.codes} == {"context"}
    assert any("no kind" in w and "'context'" in w for w in result.warnings)
    assert any("no description" in w for w in result.warnings)
    # The same codebook from the QDPX (capitalised Sources/, Project.qde with CRLF).
    again = import_qdc(DATA / "TestProject.qdpx", tmp_path / "tp.yaml").codebook
    assert (again.groups, again.codes) == (book.groups, book.codes)


def test_qdc_problems_are_found_and_bad_files_named(tmp_path):
    bad = (
        f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes>'
        '<Code guid="not-a-guid" name="x" isCodable="true"/>'
        '<Code guid="11111111-2222-3333-4444-555555555555" name="y" isCodable="maybe">'
        "<Code guid='11111111-2222-3333-4444-555555555556' name='z' isCodable='true'/>"
        "<Description>after the child</Description></Code>"
        "</Codes></CodeBook>"
    )
    problems = qdc_problems(etree.ElementTree(etree.fromstring(bad)))
    text = " ".join(problems)
    assert "not-a-guid" in text and "maybe" in text and "Description" in text
    broken = tmp_path / "broken.qdc"
    broken.write_text("<CodeBook><Codes>", encoding="utf-8")
    with pytest.raises(RefiError, match=r"broken\.qdc.*not well-formed"):
        import_qdc(broken, tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists()


# -- QDPX export --------------------------------------------------------------------------------


def test_export_is_valid_and_every_offset_points_at_the_coded_text(tiny):
    with Store(tiny / "decided.sqlite") as store:
        result = export_qdpx(store, tiny / "out.qdpx", include_suggestions=True)
        units = store.units().set_index("unit_id")
        codebook = store.codebook()
        texts = store.transcript_texts()
    root, files = _unzip(tiny / "out.qdpx")
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    assert schema.validate(root), schema.error_log
    order = [etree.QName(c).localname for c in root]
    assert order == [t for t in PROJECT_ORDER if t in order]
    assert set(order) >= {"Users", "CodeBook", "Variables", "Cases", "Sources", "Notes", "Sets"}
    # Sources: UTF-8, LF only, no BOM, identical to the text the offsets point into.
    sources = {s.get("name"): s for s in root.iterfind(".//q:TextSource", NS)}
    assert set(sources) == {"T-01", "T-02", "T-03"}
    by_guid = _texts_by_guid(root, files)
    for name, source in sources.items():
        data = files["sources/" + source.get("plainTextPath").removeprefix("internal://")]
        assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
        assert data.decode("utf-8") == texts[name]
        assert source.find("q:PlainTextContent", NS) is None
    # Every coded selection's offsets (code points) give exactly its unit's text.
    label = {code_guid(codebook, c.id): c.id for c in codebook.codes}
    users = {u.get("guid"): u.get("name") for u in root.iterfind(".//q:User", NS)}
    coded = set()
    for source in root.iterfind(".//q:TextSource", NS):
        text = by_guid[source.get("guid")]
        for sel in source.iterfind("q:PlainTextSelection", NS):
            start, end = int(sel.get("startPosition")), int(sel.get("endPosition"))
            for coding in sel.iterfind("q:Coding", NS):
                user = users[coding.get("creatingUser")]
                code = label[coding.find("q:CodeRef", NS).get("targetGUID")]
                matches = units[(units["start"] == start) & (units["end"] == end)]
                assert text[start:end] in set(matches["text"])
                coded.add((user, source.get("name"), text[start:end], code))
    assert ("ann", "T-01", _unit_text(units, "café meetings"), "ts.trust") in coded
    assert ("bob", "T-01", _unit_text(units, "café meetings"), "ts.trust") in coded
    assert ("ann", "T-01", _unit_text(units, "stickers"), "process.collaboration_sharing") in coded
    assert ("ann", "T-02", _unit_text(units, "never enough time"), "ts.time_pressure") in coded
    assert ("ann", "T-03", _unit_text(units, "nobody would judge"), "ts.trust") in coded
    emoji = _unit_text(units, "café meetings")
    assert "🙂" in emoji and "“what went wrong”" in emoji and "—" in emoji
    # Users: each reviewer, and the machine coder named with its model and codebook hash.
    names = sorted(users.values())
    machine = [n for n in names if n.startswith(MACHINE_PREFIX)]
    assert names[:2] == ["ann", "bob"] and len(machine) == 1
    assert codebook.sha256[:12] in machine[0] and "MiniLM" in machine[0]
    assert result.reviewers == ("ann", "bob") and result.codings == 5
    # Unreviewed suggestions sit under the machine user with score and status.
    machine_guid = next(g for g, n in users.items() if n == machine[0])
    suggested = [
        s
        for s in root.iterfind(".//q:PlainTextSelection", NS)
        if s.get("creatingUser") == machine_guid
    ]
    assert len(suggested) >= 1 and result.suggestions >= len(suggested)
    for sel in suggested:
        description = sel.findtext("q:Description", namespaces=NS)
        assert "status: unreviewed" in description and "score 0." in description
    # Memos are Notes, referenced from the reviewer's selection.
    notes = {n.get("guid"): n for n in root.iterfind(".//q:Note", NS)}
    memo_texts = {n.findtext("q:PlainTextContent", namespaces=NS) for n in notes.values()}
    assert memo_texts == {"Strong “trust” quote 🙂", "CRLF file, é", "agree"}
    for ref in root.iterfind(".//q:PlainTextSelection/q:NoteRef", NS):
        assert ref.get("targetGUID") in notes


def _unit_text(units, contains: str) -> str:
    rows = units[units["text"].str.contains(contains)]
    assert len(rows) == 1
    return rows.iloc[0]["text"]


def test_export_cases_and_variables_carry_attributes_never_names(tiny):
    with Store(tiny / "decided.sqlite") as store:
        export_qdpx(store, tiny / "out.qdpx")
    root, files = _unzip(tiny / "out.qdpx")
    variables = {v.get("guid"): v.get("name") for v in root.iterfind(".//q:Variable", NS)}
    assert set(variables.values()) <= {"role", "local_authority", "workstream", "network", "date"}
    cases = {}
    for case in root.iterfind(".//q:Case", NS):
        values = {
            variables[v.find("q:VariableRef", NS).get("targetGUID")]: v.findtext(
                "q:TextValue", namespaces=NS
            )
            for v in case.iterfind("q:VariableValue", NS)
        }
        cases[case.get("name")] = (values, case)
    assert set(cases) == {"T-01", "T-02", "T-03 P1", "T-03 P2"}
    assert cases["T-01"][0]["network"] == "Café network"
    assert cases["T-02"][0]["role"] == "Quality improvement officer"
    assert cases["T-03 P2"][0] == {
        "role": "Depute head teacher",
        "local_authority": "LA-D",
        "workstream": "CLTA",
        "network": "Early level network",
    }
    # A group interview's cases point at their own turns; a one-to-one's at its source.
    assert cases["T-01"][1].find("q:SourceRef", NS) is not None
    by_guid = _texts_by_guid(root, files)
    turns = {s.get("guid"): s for s in root.iterfind(".//q:PlainTextSelection", NS)}
    t03 = next(g for g in by_guid if "nobody would judge" in by_guid[g])
    p2_text = [
        by_guid[t03][
            int(turns[r.get("targetGUID")].get("startPosition")) : int(
                turns[r.get("targetGUID")].get("endPosition")
            )
        ]
        for r in cases["T-03 P2"][1].iterfind("q:SelectionRef", NS)
    ]
    assert p2_text == [
        "Time was the barrier for us; we’d no cover to release staff, so the network stalled."
    ]


def test_export_guids_are_stable_and_the_file_identical_across_reexports(tiny):
    with Store(tiny / "decided.sqlite") as store:
        export_qdpx(store, tiny / "one.qdpx")
        export_qdpx(store, tiny / "two.qdpx")
        assert (tiny / "one.qdpx").read_bytes() == (tiny / "two.qdpx").read_bytes()
        unit = _unit(store, "T-02", "Sharing our plans")
        store.decide("carol", [NewDecision(unit.unit_id, "ts.transparency", "add")])
        export_qdpx(store, tiny / "three.qdpx")
    guids = [
        {e.get("guid") for e in _unzip(tiny / name)[0].iter() if e.get("guid")}
        for name in ("one.qdpx", "three.qdpx")
    ]
    assert guids[0] < guids[1]
    assert all(uuid.UUID(g).version == 5 for g in guids[1])


def test_export_refuses_to_write_an_invalid_file(tiny, monkeypatch):
    real = refi_module.build_project

    def users_after_codebook(store, include_suggestions=False):
        tree, files, summary = real(store, include_suggestions)
        root = tree.getroot()
        root.append(root[0])  # Users moved to the end: out of the schema's order
        return tree, files, summary

    monkeypatch.setattr(refi_module, "build_project", users_after_codebook)
    with Store(tiny / "decided.sqlite") as store, pytest.raises(RefiError) as caught:
        export_qdpx(store, tiny / "bad.qdpx")
    assert "not valid REFI-QDA" in caught.value.message and "Users" in caught.value.message
    assert not (tiny / "bad.qdpx").exists()


def test_export_refuses_selections_outside_their_text(tiny, monkeypatch):
    real = refi_module.build_project

    def stretched(store, include_suggestions=False):
        tree, files, summary = real(store, include_suggestions)
        sel = tree.getroot().find(".//q:PlainTextSelection", NS)
        sel.set("endPosition", "999999")
        return tree, files, summary

    monkeypatch.setattr(refi_module, "build_project", stretched)
    with Store(tiny / "decided.sqlite") as store, pytest.raises(RefiError, match="outside"):
        export_qdpx(store, tiny / "bad.qdpx")


# -- QDPX import --------------------------------------------------------------------------------


def test_import_of_our_own_export_recreates_every_decision_once(tiny):
    with Store(tiny / "decided.sqlite") as store:
        export_qdpx(store, tiny / "out.qdpx", include_suggestions=True)
        expected = {r: _accepted(store, r) for r in ("ann", "bob")}
    with Store(tiny / "undecided.sqlite") as store:
        report = import_qdpx(store, tiny / "out.qdpx", adopt=True)
        assert {r: _accepted(store, r) for r in ("ann", "bob")} == expected
        decisions = store.decisions()
        assert set(decisions["source"]) == {"import"}
        assert not any(decisions["reviewer"].str.startswith(MACHINE_PREFIX))
        assert report.machine_skipped >= 1 and report.unknown_codes == {}
        memos = set(decisions["memo"])
        assert {"Strong “trust” quote 🙂", "CRLF file, é", "agree"} <= memos
        again = import_qdpx(store, tiny / "out.qdpx", adopt=True)
        assert again.written == {} and len(store.decisions()) == len(decisions)
        assert "already up to date" in again.summary()


def test_round_trip_keeps_reviewed_no_code(tiny):
    """A unit ann reviewed and gave no code comes back reviewed, its suggestions rejected."""
    with Store(tiny / "decided.sqlite") as store:
        suggestions = store.suggestions()
        decided = set(store.decisions()["unit_id"])
        unit = next(u for u in suggestions["unit_id"] if u not in decided)
        codes = set(suggestions.loc[suggestions["unit_id"] == unit, "code_id"])
        store.decide("ann", [NewDecision(unit, c, "reject") for c in sorted(codes)])
        units = store.units()
        free = units[units["codable"] & ~units["unit_id"].isin(decided | {unit})]
        unsuggested = free[~free["unit_id"].isin(set(suggestions["unit_id"]))]
        bare = (unsuggested if len(unsuggested) else free)["unit_id"].iloc[0]
        store.decide("ann", [NewDecision(bare, "", "done")])  # marked done, no code
        before = review_counts(
            store.units(),
            current_codings(suggestions, store.resolved_decisions()),
            store.resolved_decisions(),
        )
        export_qdpx(store, tiny / "out.qdpx")
    root, _ = _unzip(tiny / "out.qdpx")
    empty = [
        s
        for s in root.iterfind(".//q:PlainTextSelection", NS)
        if s.findtext("q:Description", namespaces=NS) == REVIEWED_NO_CODE
    ]
    assert len(empty) == 2 and all(s.find("q:Coding", NS) is None for s in empty)
    with Store(tiny / "undecided.sqlite") as store:
        report = import_qdpx(store, tiny / "out.qdpx", adopt=True)
        mine = current_codings(store.suggestions(), store.resolved_decisions(), "ann")
        resolved = store.resolved_decisions()
        after = review_counts(
            store.units(), current_codings(store.suggestions(), resolved), resolved
        )
        reviewed = reviewed_units(store.units(), store.suggestions(), resolved, "ann")
    assert report.reviewed_no_code == 2
    assert {unit, bare} <= reviewed  # both come back reviewed, with no code
    with Store(tiny / "undecided.sqlite") as store:
        marks = store.decisions(reviewer="ann").query("action == 'done'")
    # Nothing suggested: recorded as done; else as rejections of what was suggested.
    assert marks["unit_id"].tolist() == ([bare] if len(unsuggested) else [])
    on_unit = mine[mine["unit_id"] == unit]
    assert set(on_unit["code_id"]) == codes and set(on_unit["status"]) == {"rejected"}
    # Accepted codings come back as they were; the import rejects what a user left off a unit
    # they coded, so units only partly reviewed here come back reviewed.
    assert after["accepted_codings"] == before["accepted_codings"]
    assert after["units_reviewed"] >= before["units_reviewed"]


def test_import_for_comparison_leaves_the_project_alone(tiny):
    """Another tool's coding of the same units is a separate coder: the project's codings,
    review counts and reviewers stay as they were, unless it is adopted."""
    with Store(tiny / "decided.sqlite") as store:
        export_qdpx(store, tiny / "theirs.qdpx")
    with Store(tiny / "decided.sqlite") as store:
        resolved = store.resolved_decisions()
        before = review_counts(
            store.units(), current_codings(store.suggestions(), resolved), resolved
        )
        report = import_qdpx(store, tiny / "theirs.qdpx")
        resolved = store.resolved_decisions()
        after = review_counts(
            store.units(), current_codings(store.suggestions(), resolved), resolved
        )
        coders = set(store.decisions()["reviewer"])
        assert _accepted(store, "ann (theirs.qdpx)") == _accepted(store, "ann")
    assert report.written and after == before
    assert after["reviewers"] == ["ann", "bob"]
    assert {"ann (theirs.qdpx)", "bob (theirs.qdpx)"} <= coders


def _foreign_qdpx(
    path: Path,
    store: Store,
    *,
    origin: str,
    counting: str,
    qde_name: str = "My Project.qde",
    folder: str = "Sources",
    source_name: str = "T-02",
    front_matter: bool = False,
) -> None:
    """A QDPX written the way another tool writes it: its own GUIDs, codes named by our labels
    (plus one we do not have), the source with a BOM and CRLF line ends, and positions counted
    as ``counting`` says (``lf``: CRLF once, as ATLAS.ti; ``crlf``: twice, as NVivo)."""
    text = store.transcript_texts()["T-02"]
    if front_matter:
        text = "---\ninterview_id: T-02\n---\n\n" + text
    raw = text.replace("\n", "\r\n")

    def position(index: int) -> int:
        return index + (text.count("\n", 0, index) if counting == "crlf" else 0)

    def span(contains: str, phrase: str | None = None) -> tuple[int, int]:
        unit = _unit(store, "T-02", contains)
        offset = text.index(unit.text)
        if phrase is not None:
            offset += unit.text.index(phrase)
            return position(offset), position(offset + len(phrase))
        return position(offset), position(offset + len(unit.text))

    book = store.codebook()
    ns = NS["q"]
    fresh = lambda: str(uuid.uuid4()).upper()  # noqa: E731
    users = {"Ann Smith": fresh(), "Bob Jones": fresh()}
    codes = {
        book.code("ts.time_pressure").label: fresh(),
        book.code("ts.trust").label: fresh(),
        "Weather": fresh(),
    }
    root = etree.Element(f"{{{ns}}}Project", nsmap={None: ns}, name="Field study", origin=origin)
    users_el = etree.SubElement(root, f"{{{ns}}}Users")
    for name, g in users.items():
        etree.SubElement(users_el, f"{{{ns}}}User", guid=g, name=name)
    codes_el = etree.SubElement(etree.SubElement(root, f"{{{ns}}}CodeBook"), f"{{{ns}}}Codes")
    for name, g in codes.items():
        etree.SubElement(codes_el, f"{{{ns}}}Code", guid=g, name=name, isCodable="true")
    sources = etree.SubElement(root, f"{{{ns}}}Sources")
    source_guid = fresh()
    source = etree.SubElement(
        sources,
        f"{{{ns}}}TextSource",
        guid=source_guid,
        name=source_name,
        plainTextPath=f"internal://{source_guid}.txt",
    )
    first_start, _ = span("never enough time")
    _, second_end = span("meetings got shorter")
    selections = [
        # (start, end, name, code, user)
        (
            *span("never enough time"),
            "Honestly there was never enough time to meet…",
            "ts_time",
            "Ann Smith",
        ),
        (
            *span("Sharing our plans"),
            "Sharing our plans openly built trust across the…",
            "ts_trust",
            "Ann Smith",
        ),
        (*span("Sharing our plans"), "Quotation 1:3", "Weather", "Ann Smith"),
        (first_start, second_end, "Honestly there was never enough time…", "ts_trust", "Bob Jones"),
        (*span("Sharing our plans", "built trust"), "built trust", "ts_trust", "Bob Jones"),
    ]
    label = {
        "ts_time": book.code("ts.time_pressure").label,
        "ts_trust": book.code("ts.trust").label,
        "Weather": "Weather",
    }
    for start, end, name, code, user in selections:
        sel = etree.SubElement(
            source,
            f"{{{ns}}}PlainTextSelection",
            guid=fresh(),
            name=name,
            startPosition=str(start),
            endPosition=str(end),
            creatingUser=users[user],
        )
        if name.startswith("Sharing") and user == "Ann Smith":
            etree.SubElement(sel, f"{{{ns}}}Description").text = "Trust — from “openness”"
        coding = etree.SubElement(sel, f"{{{ns}}}Coding", guid=fresh(), creatingUser=users[user])
        etree.SubElement(coding, f"{{{ns}}}CodeRef", targetGUID=codes[label[code]])
    sets = etree.SubElement(root, f"{{{ns}}}Sets")
    for name in ("role: Quality improvement officer", "workstream: CLN"):
        s = etree.SubElement(sets, f"{{{ns}}}Set", guid=fresh(), name=name)
        etree.SubElement(s, f"{{{ns}}}MemberSource", targetGUID=source_guid)
    xml = etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(qde_name, xml.replace(b"\n", b"\r\n"))
        archive.writestr(f"{folder}/{source_guid}.txt", b"\xef\xbb\xbf" + raw.encode("utf-8"))


@pytest.mark.parametrize(
    ("origin", "counting"),
    [("ATLAS.ti 9.1.0 (Windows)", "lf"), ("NVivo 14 (Windows)", "crlf")],
)
def test_import_from_another_tool_with_crlf_sources(tiny, origin, counting):
    with Store(tiny / "undecided.sqlite") as store:
        _foreign_qdpx(tiny / "field.qdpx", store, origin=origin, counting=counting)
        time_unit = _unit(store, "T-02", "never enough time").unit_id
        shorter = _unit(store, "T-02", "meetings got shorter").unit_id
        sharing = _unit(store, "T-02", "Sharing our plans").unit_id
        dry = import_qdpx(store, tiny / "field.qdpx", dry_run=True)
        assert len(store.decisions()) == 0 and dry.written
        report = import_qdpx(store, tiny / "field.qdpx")
        ann = _accepted(store, "Ann Smith (field.qdpx)")
        bob = _accepted(store, "Bob Jones (field.qdpx)")
        memos = set(store.decisions(reviewer="Ann Smith (field.qdpx)")["memo"])
        # For comparison only: the project's own codings do not change.
        assert set(store.decisions()["source"]) == {"compare"}
        assert _accepted(store, None) == set()
    assert ann == {(time_unit, "ts.time_pressure"), (sharing, "ts.trust")}
    # Bob's span covers two whole units: both are coded. His phrase inside a unit is reported.
    assert bob == {(time_unit, "ts.trust"), (shorter, "ts.trust")}
    assert report.unknown_codes == {"Weather": 1}
    assert len(report.unplaced) == 1 and "built trust" in report.unplaced[0]
    assert "Trust — from “openness”" in memos
    assert report.attribute_notes == [
        "T-02: workstream is 'CLN' in the file, 'LEI' here (kept as here)"
    ]
    if counting == "crlf":
        assert any("CRLF as two characters" in line for line in report.countings)
    summary = report.summary()
    assert "'Weather': 1 codings" in summary and "Ann Smith (field.qdpx)" in summary
    assert "For comparison only" in summary


def test_import_matches_sources_by_file_name_or_by_text(tiny):
    with Store(tiny / "undecided.sqlite") as store:
        _foreign_qdpx(
            tiny / "by_name.qdpx",
            store,
            origin="MAXQDA 2022",
            counting="lf",
            qde_name="project.qde",
            folder="sources",
            source_name="t02_windows.txt",
        )
        report = import_qdpx(store, tiny / "by_name.qdpx", dry_run=True)
        assert report.matched == [("t02_windows.txt", "T-02", "by name")]
        _foreign_qdpx(
            tiny / "by_text.qdpx",
            store,
            origin="QualCoder 3.6",
            counting="lf",
            source_name="Interview with the QIO.docx",
            front_matter=True,
        )
        report = import_qdpx(store, tiny / "by_text.qdpx")
        assert report.matched == [("Interview with the QIO.docx", "T-02", "by text")]
        assert _accepted(store, "Ann Smith (by_text.qdpx)") == {
            (_unit(store, "T-02", "never enough time").unit_id, "ts.time_pressure"),
            (_unit(store, "T-02", "Sharing our plans").unit_id, "ts.trust"),
        }


def test_atlas_sample_and_test_project_are_read(tiny):
    for name in ("atlas_sample.qde", "TestProject.qdpx"):
        project = read_qdpx(DATA / name)
        assert project.origin.startswith("ATLAS.ti 8.4")
        assert sorted(project.users.values()) == [
            "ATLAS.ti",
            "Friedrich Markgraf",
            "Sebastian Petrausch",
        ]
        assert len(project.code_nodes()) == 14
        sources = {s.name: s for s in project.sources}
        assert len(sources) == 6 and all(s.text is None for s in sources.values())
        assert sources["Simon.docx"].attributes == {"gender": "male", "age": "67"}
        assert sources["Mabel.txt"].attributes == {"gender": "female", "age": "25"}
        simon = sorted((s.start, s.end) for s in sources["Simon.docx"].selections)
        assert simon == [(215, 275), (513, 907), (688, 907)]
        # ATLAS.ti wrote this name decomposed (NFD): e + combining circumflex.
        mabel = sources[unicodedata.normalize("NFD", "Mabêl 2ième.txt")].selections[0]
        assert (
            mabel.description == "Mabel is not the only person I know who has Coke for breakfast!"
        )
        assert project.other_sources == {
            "PictureSource": 1,
            "PDFSource": 2,
            "AudioSource": 1,
            "VideoSource": 2,
        }
        with Store(tiny / "undecided.sqlite") as store:
            report = import_qdpx(store, DATA / name)
            assert len(store.decisions()) == 0
        assert report.text_sources == 6 and not report.matched
        assert any("Simon.docx" in s and "not in the file" in s for s in report.unmatched_sources)


def test_positions_convert_between_counting_conventions():
    raw = "a\r\nb😀c\r\né"
    lf = raw.replace("\r\n", "\n")
    # 'c' is at code point 4 of the LF text, 5 with CRLF counted twice, 6 in UTF-16 units.
    assert lf[lf_position(raw, 4, "lf")] == "c"
    assert lf[lf_position(raw, 5, "crlf")] == "c"
    assert lf[lf_position(raw, 6, "utf16")] == "c"
    assert lf[lf_position(raw, 9, "utf16")] == "é"


def test_import_errors_are_messages(tiny):
    (tiny / "not.qdpx").write_bytes(b"PK\x03\x04 broken")
    with Store(tiny / "undecided.sqlite") as store:
        with pytest.raises(RefiError, match="not well-formed"):
            import_qdpx(store, tiny / "not.qdpx")
        with zipfile.ZipFile(tiny / "empty.qdpx", "w") as archive:
            archive.writestr("readme.txt", "nothing here")
        with pytest.raises(RefiError, match=r"no \.qde"):
            import_qdpx(store, tiny / "empty.qdpx")


# -- a real peer: pyrefiqda, an independent REFI-QDA reader and writer --------------------------


def test_round_trip_through_an_independent_reader_and_writer(tiny):
    from pyrefiqda import RefiProject

    with Store(tiny / "decided.sqlite") as store:
        export_qdpx(store, tiny / "ours.qdpx")
        codebook = store.codebook()
        units = store.units()
        expected = {r: _accepted(store, r) for r in ("ann", "bob")}
    unit_text = dict(zip(units["unit_id"], units["text"], strict=True))
    label = {code_guid(codebook, c.id): c.id for c in codebook.codes}
    extract = tiny / "extracted"
    peer = RefiProject.load(tiny / "ours.qdpx", extract_dir=str(extract))
    users = {u.guid: u.name for u in peer.users.user}
    read_back = set()
    for source in peer.sources.text_source:
        path = RefiProject.resolve_source_path(source.plain_text_path, extract)
        text = path.read_text(encoding="utf-8")
        for sel in source.plain_text_selection:
            for coding in sel.coding:
                quote = text[sel.start_position : sel.end_position]
                read_back.add(
                    (users[coding.creating_user], quote, label[coding.code_ref.target_guid])
                )
    wanted = {(who, unit_text[u], code) for who, pairs in expected.items() for u, code in pairs}
    assert read_back == wanted
    # The peer writes the project back out; we import its file into an undecided copy.
    RefiProject.save(peer, tiny / "peer.qdpx", source_media_dir=extract / "sources")
    with zipfile.ZipFile(tiny / "peer.qdpx") as archive:
        qde = archive.read("project.qde")
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    assert schema.validate(etree.fromstring(qde)), schema.error_log
    with Store(tiny / "undecided.sqlite") as store:
        report = import_qdpx(store, tiny / "peer.qdpx", adopt=True)
        assert report.unplaced == [] and report.unknown_codes == {}
        assert {r: _accepted(store, r) for r in ("ann", "bob")} == expected
        decisions = store.decisions()
    for row in decisions.itertuples():
        assert unit_text[row.unit_id] == row.text


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_commands(tiny, codebook):
    qdc = tiny / "wp.qdc"
    result = runner.invoke(app, ["export-qdc", str(qdc), "--codebook", codebook.path])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import-qdc", str(qdc), "--out", str(tiny / "wp.yaml")])
    assert result.exit_code == 0 and "29 codes in 5 groups" in result.output
    out = tiny / "p.qdpx"
    store = str(tiny / "decided.sqlite")
    result = runner.invoke(
        app, ["export-qdpx", str(out), "--store", store, "--include-suggestions"]
    )
    assert result.exit_code == 0 and "Validated against the REFI-QDA" in result.output
    result = runner.invoke(
        app, ["import-qdpx", str(out), "--store", str(tiny / "undecided.sqlite"), "--dry-run"]
    )
    assert result.exit_code == 0 and "dry run: nothing was written" in result.output
    result = runner.invoke(app, ["import-qdpx", str(tiny / "missing.qdpx"), "--store", store])
    assert result.exit_code == 2 and "E960" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["export-qdpx", str(out), "--store", str(tiny / "none.sqlite")])
    assert result.exit_code == 2 and "no project database" in result.output
    assert not (tiny / "none.sqlite").exists()
