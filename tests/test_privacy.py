"""The anonymity check: measured recall, redaction that keeps offsets, false alarms, policy."""

from __future__ import annotations

import pytest

from pipeline import privacy
from pipeline.ingest import read_transcript, read_transcripts
from pipeline.privacy import (
    PLACEHOLDERS,
    PrivacyError,
    ProjectNames,
    apply_policy,
    build_analyzer,
    measure_detection,
    redact,
    redacted_source,
    scan_transcript,
    scan_transcripts,
)
from pipeline.segment import segment
from pipeline.settings import Settings
from tests.conftest import ROOT, run_qcode, write

LEAKY = """---
interview_id: L-1
role: Head teacher
local_authority: LA-C
---

Interviewer: Who helped most?

Participant: Honestly Morag Campbell did, and Mr O'Neill at Bankhead Academy. You can reach
me on 0141 496 0123 or morag.c@school.sch.uk, we're at G12 8QQ. We use Teams and Glow in P7.

Interviewer: Thanks. And the West Online School?

Participant: It was brilliant for our S3 class, Obiageli Okafor says.
"""


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer(ProjectNames(schools=["Bankhead Academy"]))


def test_measured_recall_meets_the_targets():
    report = measure_detection(ROOT / "tests" / "data" / "privacy")
    for kind in ("EMAIL", "PHONE", "POSTCODE", "SCHOOL", "ADDRESS", "HANDLE"):
        assert report[kind]["recall"] == 1.0, (kind, report[kind]["missed"])
    for kind in ("DATE_OF_BIRTH", "STAFF_ID", "NI_NUMBER"):
        assert report[kind]["recall"] == 1.0, (kind, report[kind]["missed"])
    assert report["PERSON"]["recall"] >= 0.9, report["PERSON"]["missed"]
    assert report["PERSON"]["precision"] >= 0.9, report["PERSON"]["false_alarms"]
    assert report["PLACE"]["recall"] >= 0.9, report["PLACE"]["missed"]


def test_held_out_recall_meets_the_targets():
    """A set written independently and never used while building the recognisers."""
    report = measure_detection(ROOT / "tests" / "data" / "privacy_holdout")
    for kind in ("EMAIL", "PHONE", "POSTCODE"):
        assert report[kind]["recall"] == 1.0, (kind, report[kind]["missed"])
    assert report["PERSON"]["recall"] >= 0.8, report["PERSON"]["missed"]


def _spans(transcripts, analyzer) -> set[tuple]:
    found = scan_transcripts(transcripts, lambda: analyzer, ProjectNames())
    return {(f.transcript_id, f.start, f.end, f.kind) for f in found}


@pytest.mark.parametrize("folder", ["privacy", "privacy_holdout"])
def test_ner_shortcut_finds_what_ner_on_every_sentence_finds(analyzer, folder, monkeypatch):
    """NER runs only on sentences with a telling capital letter, and their neighbours (most of
    the scan's time saved). On both planted sets that finds exactly what NER on all the text
    finds; in groups of two transcripts too."""
    transcripts, _ = read_transcripts(ROOT / "tests" / "data" / folder)
    shortcut = _spans(transcripts, analyzer)
    monkeypatch.setattr(privacy, "NER_GROUP", 2)
    assert _spans(transcripts, analyzer) == shortcut
    monkeypatch.setattr(privacy, "_may_name", lambda piece, ordinary: True)
    assert _spans(transcripts, analyzer) == shortcut
    assert any(kind == "PERSON" for *_, kind in shortcut)


@pytest.mark.parametrize("folder", ["privacy", "privacy_holdout"])
def test_ner_in_worker_processes_finds_what_one_process_finds(
    analyzer, folder, monkeypatch, tmp_path
):
    """Large scans run NER in spawned worker processes, group by group: the same findings,
    in the same order, as NER in this process."""
    transcripts, _ = read_transcripts(ROOT / "tests" / "data" / folder)
    monkeypatch.setattr(privacy, "NER_GROUP", 2)  # several groups in flight
    one = scan_transcripts(transcripts, lambda: analyzer, ProjectNames(), workers=1)
    cache = privacy.ner_cache(tmp_path / "ner.sqlite")
    _forget_ner_in_memory(monkeypatch)  # the workers must do the work, not this process's memory
    two = scan_transcripts(transcripts, lambda: analyzer, ProjectNames(), workers=2, cache=cache)
    assert [(f.transcript_id, f.start, f.end, f.kind, f.text) for f in two] == [
        (f.transcript_id, f.start, f.end, f.kind, f.text) for f in one
    ]
    assert any(f.kind == "PERSON" and f.recogniser == "spaCy NER" for f in two)
    # What the workers found was kept on disk: a new process sends NER nothing.
    _forget_ner_in_memory(monkeypatch)
    sent = _count_ner_texts(monkeypatch)
    again = scan_transcripts(transcripts, lambda: analyzer, ProjectNames(), cache=cache)
    assert sent == []
    assert [(f.start, f.end, f.kind) for f in again] == [(f.start, f.end, f.kind) for f in one]


def _forget_ner_in_memory(monkeypatch) -> None:
    """As in a new process: nothing NER found is kept in memory (``privacy._NER_KEPT``), and
    no transcript's findings either (``privacy._FOUND``)."""
    monkeypatch.setattr(privacy, "_NER_KEPT", {})
    monkeypatch.setattr(privacy, "_NER_KEPT_CHARS", [0])
    monkeypatch.setattr(privacy, "_FOUND", {})


@pytest.fixture(autouse=True)
def _each_test_scans_afresh(monkeypatch):
    """Findings a test's scans keep in memory (``privacy._FOUND``) stay with that test: tests
    change name lists and recognisers between scans of the same text."""
    monkeypatch.setattr(privacy, "_FOUND", {})


def test_a_process_checks_an_unchanged_transcript_once(tmp_path, analyzer, monkeypatch):
    """A watching process scans each transcript version once: scanning the same transcripts
    again runs no recogniser and reads no cached scan, and gives the same findings; an edited
    transcript is scanned again."""
    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    first = scan_transcripts([transcript], lambda: analyzer, ProjectNames())
    assert first
    real = privacy._Scan.of
    monkeypatch.setattr(privacy._Scan, "of", None)  # any regex pass would fail now
    assert scan_transcripts([transcript], lambda: analyzer, ProjectNames()) == first
    monkeypatch.setattr(privacy._Scan, "of", real)
    more = "\nParticipant: Ask Sarah Thompson.\n"
    edited = read_transcript(write(tmp_path / "l.md", LEAKY + more))
    again = scan_transcripts([edited], lambda: analyzer, ProjectNames())
    assert any(f.text == "Sarah Thompson" for f in again)


def _count_ner_texts(monkeypatch) -> list[str]:
    """The texts sent to (real) NER from now on."""
    sent: list[str] = []
    real = privacy._entities_in

    def counted(texts, nlp):
        sent.extend(texts)
        return real(texts, nlp)

    monkeypatch.setattr(privacy, "_entities_in", counted)
    return sent


def test_the_ner_cache_sends_ner_only_changed_stretches(tmp_path, analyzer, monkeypatch):
    """NER results per stretch of text are kept on disk (``privacy.ner_cache``): a new process
    scanning an edited transcript sends NER only the stretches it has not seen, finds what a
    scan without the cache finds, and the cache holds no finding's text."""
    cache = privacy.ner_cache(tmp_path / "ner.sqlite")
    _forget_ner_in_memory(monkeypatch)
    sent = _count_ner_texts(monkeypatch)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = read_transcript(write(tmp_path / "a" / "l.md", LEAKY))
    scan_transcripts([before], lambda: analyzer, ProjectNames(), cache=cache)
    assert sent
    all_before = len(sent)

    edit = "\nInterviewer: Anyone else?\n\nParticipant: Later that week Sarah Thompson phoned me.\n"
    after = read_transcript(write(tmp_path / "b" / "l.md", LEAKY + edit))
    _forget_ner_in_memory(monkeypatch)
    sent.clear()
    cached = scan_transcripts([after], lambda: analyzer, ProjectNames(), cache=cache)
    assert 0 < len(sent) < all_before + 1, sent
    assert all("Sarah" in text or "Anyone" in text for text in sent), sent
    _forget_ner_in_memory(monkeypatch)
    fresh = scan_transcripts([after], lambda: analyzer, ProjectNames())
    assert [(f.start, f.end, f.kind) for f in cached] == [(f.start, f.end, f.kind) for f in fresh]
    # Obiageli Okafor (on no name list), found by NER in the first scan, now comes from the cache.
    assert any(f.text == "Obiageli Okafor" and f.recogniser == "spaCy NER" for f in cached)
    cache.close()
    stored = (tmp_path / "ner.sqlite").read_bytes()
    for f in cached:
        assert f.text.encode() not in stored, f.text


def test_the_shared_analyzer_comes_with_its_word_lists(monkeypatch):
    """A watching process loads the analyzer while it waits; the word lists a scan reads come
    with it, so its first edit does not build them."""
    monkeypatch.setattr(privacy, "_ANALYZERS", {})
    privacy._name_words.cache_clear()
    privacy.surnames.cache_clear()
    privacy.shared_analyzer()
    assert privacy._name_words.cache_info().currsize == 1
    assert privacy.surnames.cache_info().currsize == 1


def test_worker_count_follows_the_amount_of_text(monkeypatch):
    monkeypatch.setattr(privacy.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert privacy.ner_workers(10_000) == 1  # starting a worker would cost more than it saves
    assert privacy.ner_workers(privacy.NER_WORKERS_FROM) == 2
    monkeypatch.setattr(privacy.os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert privacy.ner_workers(10 * privacy.NER_WORKERS_FROM) == 1


def test_lower_case_transcripts_send_everything_to_ner(tmp_path, analyzer, monkeypatch):
    """Capitals say nothing in an all-lower-case transcript: no sentence is skipped."""
    _, front, body = LEAKY.split("---\n", 2)
    body = body.lower().replace("interviewer:", "Interviewer:")
    body = body.replace("participant:", "Participant:")
    transcript = read_transcript(write(tmp_path / "low.md", f"---\n{front}---\n{body}"))
    asked = []
    monkeypatch.setattr(privacy, "_may_name", lambda piece, ordinary: asked.append(piece))
    scan_transcript(transcript, analyzer)
    assert asked == []
    capitalised = read_transcript(write(tmp_path / "cap.md", LEAKY))
    scan_transcript(capitalised, analyzer)
    assert asked


def test_findings_name_file_line_and_snippet(tmp_path, analyzer):
    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    # The evaluation's own names are allowed by its names file, not by the product.
    assert "West Online School" in {f.text for f in scan_transcript(transcript, analyzer)}
    project = ProjectNames(allow=["West Online School", "Glow"])
    findings = scan_transcript(transcript, analyzer, project)
    kinds = {f.text: f.kind for f in findings}
    assert kinds["Morag Campbell"] == "PERSON" and kinds["Mr O'Neill"] == "PERSON"
    assert kinds["Bankhead Academy"] == "SCHOOL"
    assert kinds["0141 496 0123"] == "PHONE" and kinds["G12 8QQ"] == "POSTCODE"
    assert kinds["morag.c@school.sch.uk"] == "EMAIL"
    assert not {"Teams", "Glow", "P7", "S3", "West Online School"} & set(kinds)
    phone = next(f for f in findings if f.kind == "PHONE")
    assert phone.line == 10 and phone.path.endswith("l.md")
    assert "[PHONE]" in phone.snippet and "0141" not in phone.snippet
    assert str(phone).startswith(f"{phone.path}, line 10") and "0141 496 0123" in str(phone)
    assert "0141" not in phone.masked()


def test_redaction_keeps_offsets_for_coding(tmp_path, analyzer, nlp):
    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    findings = scan_transcript(transcript, analyzer)
    redacted = redact(transcript, findings)
    for f in findings:
        assert f.text not in redacted.text
    assert PLACEHOLDERS["PERSON"] in redacted.text and "[SCHOOL]" in redacted.text
    for unit in segment([redacted], nlp, Settings()):
        assert redacted.text[unit.start : unit.end] == unit.text
    assert [t.speaker for t in redacted.turns] == [t.speaker for t in transcript.turns]
    source = redacted_source(redacted)
    assert "Morag" not in source and source.startswith("---\n")
    again = read_transcript(write(tmp_path / "again.md", source))
    assert again.text.count("[NAME]") == redacted.text.count("[NAME]")


def test_policy_stop_refuses_and_warn_redacts(tmp_path, analyzer):
    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    findings = scan_transcript(transcript, analyzer)
    with pytest.raises(PrivacyError, match="nothing was coded") as error:
        apply_policy([transcript], findings, "stop")
    assert "l.md, line" in error.value.message
    (coded,) = apply_policy([transcript], findings, "warn")
    assert "Morag" not in coded.text
    assert apply_policy([transcript], findings, "off")[0].text == transcript.text
    with pytest.raises(PrivacyError, match="not one of"):
        apply_policy([transcript], findings, "ignore")


def test_false_alarms_are_recorded_with_who_and_respected(tmp_path, project_store, analyzer):
    from pipeline.store import PrivacyMarks, Store

    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    calls = []

    def factory():
        calls.append(1)
        return analyzer

    with Store(project_store) as store:
        marks = PrivacyMarks(store)
        first = scan_transcripts([transcript], factory, ProjectNames(), marks)
        assert any(f.text == "Morag Campbell" for f in first)
        marks.mark_false_alarm("ann", "Morag Campbell", "L-1", note="a fictional character")
        second = scan_transcripts([transcript], factory, ProjectNames(), marks)
        assert len(calls) == 1  # the second scan came from the cache
        assert not any(f.text == "Morag Campbell" for f in second)
        recorded = marks.marks()
        assert recorded[["reviewer", "text", "transcript_id"]].values.tolist() == [
            ["ann", "Morag Campbell", "L-1"]
        ]


@pytest.mark.slow
def test_runs_never_output_flagged_text(prefect_harness, tmp_path, cache_dir):
    from flows.coding import code_transcripts
    from tests.conftest import CODEBOOK

    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "l.md", LEAKY)
    out = tmp_path / "out"
    run = code_transcripts(folder, CODEBOOK, out, Settings(cache_dir=cache_dir, privacy="redact"))
    for path in run.rglob("*"):
        if path.suffix in {".csv", ".md", ".html", ".txt", ".json"}:
            text = path.read_text(encoding="utf-8")
            for leaked in ("Morag", "O'Neill", "0141 496 0123", "G12 8QQ", "school.sch.uk"):
                assert leaked not in text, (path.name, leaked)
    manifest = __import__("json").loads((run / "manifest.json").read_text())
    assert manifest["privacy"]["by_kind"]["PHONE"] == 1
    assert (out / "redacted_transcripts" / "L-1.md").exists()
    stopped = code_transcripts(
        folder, CODEBOOK, tmp_path / "out2", Settings(cache_dir=cache_dir, privacy="stop")
    )
    assert isinstance(stopped, privacy.PrivacyStopped) and "nothing was coded" in stopped.message
    assert "Morag" not in stopped.message and "l.md, line" in stopped.message
    assert not (tmp_path / "out2").exists() or not [
        p for p in (tmp_path / "out2").iterdir() if p.is_dir() and not p.name.startswith(".")
    ]


# ---- every recogniser, every channel, nothing in clear -------------------------------------

RECOGNISED = [
    ("qcode school", "SCHOOL", "I teach at Craigmount Academy now.", "Craigmount Academy"),
    (
        "qcode school short form",
        "SCHOOL",
        "It was Craigmount Academy. At Craigmount we",
        "Craigmount",
    ),
    (
        "qcode project schools",
        "SCHOOL",
        "We met at Larkfield Nursery Class.",
        "Larkfield Nursery Class",
    ),
    ("qcode project places", "PLACE", "She lives out in Drumchapel now.", "Drumchapel"),
    ("spaCy NER", "PLACE", "She moved up to Aberdeen last year.", "Aberdeen"),
    ("spaCy NER", "PERSON", "Our coach, Obiageli Okafor, was lovely.", "Obiageli Okafor"),
    ("qcode first name", "PERSON", "honestly i asked sandra about it", "sandra"),
    ("qcode first name mid-sentence", "PERSON", "and then Grace came in late", "Grace"),
    ("qcode lower-case name and surname", "PERSON", "i work with will patterson", "will patterson"),
    ("qcode title and surname", "PERSON", "then Mrs Adeyemi showed us round", "Mrs Adeyemi"),
    ("qcode name part", "PERSON", "Przemek Nowak fixed it. Thanks, Przemek!", "Przemek"),
    ("qcode email", "EMAIL", "write to k.doe@school.sch.uk please", "k.doe@school.sch.uk"),
    ("qcode postcode", "POSTCODE", "the office is at G12 8QQ now", "G12 8QQ"),
    ("qcode address", "ADDRESS", "send it to 12 Rowan Terrace please", "12 Rowan Terrace"),
    ("qcode handle", "HANDLE", "follow us at @mrs_k_maths for tips", "@mrs_k_maths"),
    ("qcode date_of_birth", "DATE_OF_BIRTH", "he was born on 4 May 2009 so", "4 May 2009"),
    ("qcode staff_id", "STAFF_ID", "my payroll number is 55021873 ok", "55021873"),
    ("qcode NI number", "NI_NUMBER", "her NI is JK 98 76 54 A on the form", "JK 98 76 54 A"),
]


@pytest.mark.parametrize(("recogniser", "kind", "sentence", "expected"), RECOGNISED)
def test_each_recogniser_finds_its_kind(tmp_path, analyzer, recogniser, kind, sentence, expected):
    """One case per recogniser, checked by the recogniser's name: disabling any one fails."""
    names = ProjectNames(schools=["Larkfield Nursery Class"], places=["Drumchapel"])
    text = f"---\ninterview_id: R-1\n---\n\nInterviewer: Go on.\n\nParticipant: {sentence}\n"
    transcript = read_transcript(write(tmp_path / "r.md", text))
    found = scan_transcript(transcript, analyzer, names)
    hits = [(f.recogniser, f.kind) for f in found if f.text == expected]
    assert (recogniser, kind) in hits, [(f.text, f.kind, f.recogniser) for f in found]


def test_uk_first_names_the_census_list_lacks(tmp_path, analyzer):
    """Names from the UK birth registers (pipeline/data/uk_first_names.txt), in lower case
    too, where spaCy's small model misses them; a UK name that is an everyday word ("storm")
    stays a word."""
    from pipeline.privacy import _census_names, name_words

    census = _census_names("dist.male.first") | _census_names("dist.female.first")
    assert not {"eilidh", "mhairi", "ruaridh"} & census
    assert {"eilidh", "mhairi", "ruaridh", "kasia"} <= name_words()
    assert "storm" not in name_words()
    text = (
        "Interviewer: Who helped?\n\n"
        "Participant: honestly mhairi and ruaridh did most of it, and the storm hit that week.\n"
    )
    transcript = read_transcript(write(tmp_path / "uk.txt", text))
    found = {f.text for f in scan_transcript(transcript, analyzer) if f.kind == "PERSON"}
    assert {"mhairi", "ruaridh"} <= found and "storm" not in found, found


def test_a_listed_place_that_is_also_a_first_name_stays_a_place(tmp_path):
    """Paisley is a UK first name and a town: the project's names file decides. A capitalised
    short first name is an acronym ("QI")."""
    names = ProjectNames(places=["Paisley"])
    text = (
        "Interviewer: Where?\n\n"
        "Participant: She teaches in Paisley now, and the QI team helped with Eilidh.\n"
    )
    transcript = read_transcript(write(tmp_path / "p.txt", text))
    found = {(f.text, f.kind) for f in scan_transcript(transcript, build_analyzer(names), names)}
    assert ("Paisley", "PLACE") in found and ("Eilidh", "PERSON") in found, found
    assert not {f for f in found if f[0] in ("Paisley", "QI") and f[1] == "PERSON"}, found


def test_phone_numbers_in_every_written_form(tmp_path, analyzer):
    text = "Participant: ring 0141 496 0123, +44 (0)131 496 0456 or 07700 900123 today.\n"
    transcript = read_transcript(write(tmp_path / "p.txt", f"Interviewer: Hi.\n\n{text}"))
    phones = [f.text for f in scan_transcript(transcript, analyzer) if f.kind == "PHONE"]
    assert len(phones) == 3, phones


def test_ordinary_words_and_curly_apostrophes_are_not_flagged(tmp_path, analyzer):
    """The sample's old false alarms: products, 'N5', 'Partnership', and words cut at a curly
    apostrophe ("do[PLACE]")."""
    text = (
        "Interviewer: And the tools?\n\n"
        "Participant: Goodwill isn’t a strategy. We don’t use Jamboard much, the N5 class "
        "liked the Partnership days. Patience, probably. It’s the kids’ call, isn’t it?\n"
    )
    transcript = read_transcript(write(tmp_path / "o.txt", text))
    found = scan_transcript(transcript, analyzer)
    assert not {f.text for f in found} & {"Goodwill", "N5", "Partnership", "Patience"}
    redacted = redact(transcript, found).text
    assert "don’t" in redacted and "isn’t" in redacted


def test_redactions_never_break_a_word(tmp_path, analyzer):
    text = (
        "Interviewer: Who?\n\n"
        "Participant: Anne-Marie’s class and O’Neill’s group; ask Siobhan’s team, we don’t "
        "mind. Mr O’Neill-Smith said Aberdeen-based staff won’t.\n"
    )
    transcript = read_transcript(write(tmp_path / "w.txt", text))
    found = scan_transcript(transcript, analyzer)
    assert found
    for f in found:
        before = transcript.text[f.start - 1] if f.start else " "
        after = transcript.text[f.end] if f.end < len(transcript.text) else " "
        assert not before.isalnum() and not after.isalnum(), f.text
    redacted = redact(transcript, found).text
    assert not __import__("re").search(r"\w\[|\]\w", redacted), redacted


def test_snippets_mask_whole_words(tmp_path, analyzer):
    """No fragment of any finding survives in a snippet (the window once cut 'Siobhan')."""
    filler = "we talked about the timetable and the homework policy for a long time "
    text = (
        "Interviewer: Who?\n\n"
        f"Participant: {filler}with Siobhan O'Neill and {filler}at PA1 1UU and then "
        f"{filler}Morag Campbell again.\n"
    )
    transcript = read_transcript(write(tmp_path / "s.txt", text))
    found = scan_transcript(transcript, analyzer)
    assert {"Siobhan O'Neill", "PA1 1UU", "Morag Campbell"} <= {f.text for f in found}
    parts = {w for f in found for w in f.text.replace("'", " ").split() if len(w) > 2}
    for f in found:
        assert PLACEHOLDERS[f.kind] in f.snippet
        assert not any(p in f.snippet for p in parts), f.snippet
        assert len(f.snippet.split()) <= 2 * privacy.SNIPPET_WORDS + 1


LEAKY_LINES = """Interview with Fiona Robertson, Craigmount Academy, Aberdeen
INTERVIEWER: Thanks for joining, can you say who you are?
Fiona Robertson: I'm head at Craigmount Academy, email fiona.robertson@craigmount.sch.uk.
INTERVIEWER: And how can people reach you?
Fiona Robertson: Ring 0131 496 0456, or post to 12 Rowan Terrace, EH4 6JQ.
INTERVIEWER: Anything else?
Fiona Robertson: I'm @fiona_teaches, born 4 May 1975, payroll number 55021873, NI JK 98 76 54 A.
INTERVIEWER: Thanks.
Fiona Robertson: My depute will patterson says hello.
"""
PLANTED = [
    "Fiona Robertson",
    "Craigmount Academy",
    "Aberdeen",
    "fiona.robertson@craigmount.sch.uk",
    "0131 496 0456",
    "12 Rowan Terrace",
    "EH4 6JQ",
    "@fiona_teaches",
    "4 May 1975",
    "55021873",
    "JK 98 76 54 A",
    "will patterson",
    "Morag Campbell",  # in the sidecar
    "siobhan",  # in the file name
]


def _leaky_folder(folder):
    folder.mkdir()
    write(folder / "interview_siobhan_oneill.txt", LEAKY_LINES)
    write(folder / "interview_siobhan_oneill.yaml", "role: Head teacher\nmentor: Morag Campbell\n")
    return folder


def test_check_privacy_finds_everything_in_a_one_turn_per_line_file(tmp_path, analyzer):
    """Whatever the layout parse gives (today such a file is not readable as a transcript),
    every planted identifier is reported and the command fails, naming the file."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = _leaky_folder(tmp_path / "in")
    result = CliRunner().invoke(app, ["check-privacy", str(folder)])
    assert result.exit_code != 0, result.output
    found = [line for line in result.output.splitlines() if "interview_siobhan_oneill" in line]
    for item in PLANTED:
        assert any(item.lower() in line.lower() for line in found), (item, result.output)
    if result.exit_code == 2:
        assert "interview_siobhan_oneill.txt" in result.output
        assert "could not be read" in result.output


def test_check_privacy_keeps_what_ner_found_for_the_next_check(tmp_path, analyzer, monkeypatch):
    """`qcode check-privacy` shares the NER cache with runs: a second check (a new process)
    sends NER nothing it saw before and reports the same findings."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = _leaky_folder(tmp_path / "in")
    command = ["check-privacy", str(folder), "--cache-dir", str(tmp_path / "cache")]
    _forget_ner_in_memory(monkeypatch)
    sent = _count_ner_texts(monkeypatch)
    first = CliRunner().invoke(app, command)
    assert sent and (tmp_path / "cache" / "ner.sqlite").is_file()
    _forget_ner_in_memory(monkeypatch)
    sent.clear()
    second = CliRunner().invoke(app, command)
    assert sent == []
    assert second.output == first.output and second.exit_code == first.exit_code


def test_check_privacy_on_an_empty_folder_fails(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["check-privacy", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no .txt" in result.output


def test_every_channel_is_scanned_and_redacted(tmp_path, analyzer):
    """Header text, a name as a speaker label, front matter, sidecar, id from the file name."""
    text = (
        "---\nrole: Head teacher\nmentor: Morag Campbell\n---\n"
        "Notes taken by Fiona Robertson at Craigmount Academy\n\n"
        "Interviewer: Hello.\n\nFiona Robertson: Hello, thanks.\n\n"
        "Interviewer: Go on.\n\nFiona Robertson: It was fine.\n"
    )
    transcript = read_transcript(write(tmp_path / "interview_siobhan_oneill.md", text))
    found = scan_transcript(transcript, analyzer)
    channels = {(f.channel, f.text) for f in found}
    assert ("attribute mentor", "Morag Campbell") in channels
    assert any(c == "id" and "siobhan" in t.lower() for c, t in channels), channels
    assert any(c == "file name" for c, _ in channels)
    in_text = [f for f in found if f.channel == "text"]
    assert sum(f.text == "Fiona Robertson" for f in in_text) == 3  # header and two labels
    redacted = redact(transcript, found)
    everything = " ".join(
        [redacted.text, redacted.transcript_id, redacted.source_path]
        + list(redacted.attributes.values())
        + [t.speaker for t in redacted.turns]
    ).lower()
    for leaked in ("fiona", "robertson", "morag", "siobhan", "craigmount"):
        assert leaked not in everything, leaked
    assert all(t.transcript_id == redacted.transcript_id for t in redacted.turns)


def test_scan_cache_keeps_no_finding_text(tmp_path, project_store, analyzer):
    import sqlite3

    from pipeline.store import PrivacyMarks, Store

    transcript = read_transcript(write(tmp_path / "l.md", LEAKY))
    with Store(project_store) as store:
        first = scan_transcripts(
            [transcript], lambda: analyzer, ProjectNames(), PrivacyMarks(store)
        )
        again = scan_transcripts([transcript], lambda: 1 / 0, ProjectNames(), PrivacyMarks(store))
    assert [(f.text, f.snippet) for f in again] == [(f.text, f.snippet) for f in first]
    rows = sqlite3.connect(project_store).execute("SELECT findings FROM privacy_scans").fetchall()
    assert rows
    dump = " ".join(r[0] for r in rows)
    for f in first:
        assert f.text not in dump, f.text


@pytest.mark.slow
def test_no_planted_identifier_is_stored_in_clear(tmp_path):
    """A real `qcode run` (its own Prefect server and database) on a file full of planted
    identifiers, then `--privacy stop`: no file it wrote holds any of them in clear."""
    import os

    from tests.conftest import CODEBOOK

    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "good.md", LEAKY)
    write(
        folder / "siobhan_notes.md",
        "---\ninterview_id: N-1\nmentor: Morag Campbell\n---\n"
        + LEAKY_LINES.replace("INTERVIEWER:", "\nInterviewer:").replace(
            "Fiona Robertson:", "\nParticipant:"
        ),
    )
    home = tmp_path / "prefect_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)

    def qcode(*args):
        return run_qcode(*args, cwd=tmp_path, env=env, timeout=900)

    out = tmp_path / "out"
    ran = qcode("run", str(folder), "-c", str(CODEBOOK), "-o", str(out), "--privacy", "redact")
    assert ran.returncode == 0, ran.stderr[-3000:]
    stopped = qcode(
        "run",
        str(folder),
        "-c",
        str(CODEBOOK),
        "-o",
        str(tmp_path / "o2"),
        "--privacy",
        "stop",
        "--cache-dir",
        str(tmp_path / "c2"),
    )
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert "nothing was coded" in stopped.stderr
    planted = [p for p in PLANTED if p not in ("siobhan",)] + ["Morag", "O'Neill", "G12 8QQ"]
    for output in (ran.stdout + ran.stderr, stopped.stdout + stopped.stderr):
        for item in planted:
            assert item not in output, item
    checked = 0
    for root in (out, tmp_path / "o2", tmp_path / "c2", tmp_path / ".cache", home):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                data = path.read_bytes()
                checked += 1
                for item in planted:
                    assert item.encode() not in data, (path, item)
                    assert item.encode("utf-16-le") not in data, (path, item)
    assert checked > 10 and any(home.rglob("*.db"))


def _die(texts):  # a worker that stops as one killed for memory does (pickled by name)
    import os

    os._exit(9)


def test_a_stopped_ner_worker_is_a_clear_error(tmp_path, analyzer, monkeypatch):
    """If a NER worker process dies (killed for memory), the scan stops with a QcodeError that
    says what happened and what to do, not a traceback of the process pool."""
    from pipeline.errors import QcodeError

    monkeypatch.setattr(privacy, "_worker_entities", _die)
    monkeypatch.setattr(privacy, "NER_GROUP", 2)  # two groups: the pool is used
    transcripts = [read_transcript(write(tmp_path / f"t{i}.md", LEAKY)) for i in range(3)]
    with pytest.raises(QcodeError, match="helper process stopped") as stopped:
        scan_transcripts(transcripts, lambda: analyzer, ProjectNames(), workers=2)
    assert stopped.value.code == "E910"


def test_a_watching_process_remembers_each_transcripts_findings_before_the_first_edit(
    tmp_path,
):
    """``remember_findings`` checks a folder as a run would, so the first edit of a watching
    process whose first run was reused does not read every cached scan from the store."""
    from tests.conftest import SAMPLE

    transcripts, _ = read_transcripts(SAMPLE)
    assert not privacy._FOUND
    to_code = privacy.remember_findings(SAMPLE, "warn", None, tmp_path / "project.sqlite", tmp_path)
    config = privacy.scan_config(privacy.load_project_names(privacy.names_file(None, SAMPLE)))
    for t in transcripts:
        assert (privacy.content_key(t), config, t.source_path) in privacy._FOUND, t.transcript_id
    # What the next run will code: every transcript, the redacted copy where something was found.
    assert len(to_code) == len(transcripts)
    assert any(a.text != b.text for a, b in zip(to_code, transcripts, strict=True))
    privacy._FOUND.clear()
    off = privacy.remember_findings(SAMPLE, "off", None, tmp_path / "project.sqlite", tmp_path)
    assert not privacy._FOUND  # the check is off: nothing is read
    assert [t.text for t in off] == [t.text for t in transcripts]
    assert privacy.remember_findings(tmp_path / "missing", "warn", None, tmp_path / "p", None) == []


def test_ner_reads_chosen_sentences_with_the_one_before_and_judges_labelled_starts_as_starts():
    """The first word after a speaker label starts a sentence ("Interviewer: And so ..." does
    not call for NER, "Interviewer: And so Kasia ..." does, and so does a label that may be a
    name); each chosen sentence is read with the one before it."""
    ordinary = privacy._allowed_words(None) | {"and", "so", "we", "met", "then"}
    assert not privacy._may_name("Interviewer: And so we met.", ordinary)
    assert not privacy._may_name("And so we met.", ordinary)
    assert privacy._may_name("Interviewer: And so Kasia met us.", ordinary)
    assert privacy._may_name("Zebedeth: and so we met.", ordinary)
    assert privacy._may_name("We met And so.", ordinary)  # a capital mid-sentence still counts
    assert privacy._windows([2, 3, 7], 1) == [(1, 3), (6, 7)]
    assert privacy._windows([0, 2], 1) == [(0, 2)]
    # Of a sentence read for context only, its last words: "four five" of "one ... five".
    assert privacy._last_words("xx one two three four five", 3, 26, 2) == 17
    assert privacy._last_words("xx one two", 3, 10, 5) == 3


def test_sentence_starts_after_notes_and_quotes_and_everyday_first_words_skip_ner():
    """A capital after a transcriber's note or an opening quote starts a sentence, and so does
    an everyday word first in a sentence that no census list has as a name; names, places
    that are surnames and capitals mid-sentence still go to NER, and month names (census
    first names) no longer do."""
    ordinary = privacy._allowed_words(None) | {"met", "the", "teacher"}
    assert not privacy._may_name("[laughs] So we met.", ordinary)
    assert not privacy._may_name("Participant: (sighs) But we met.", ordinary)
    assert not privacy._may_name('They said, "We met the teacher."', ordinary)
    assert not privacy._may_name("Honestly, we met.", ordinary)
    assert not privacy._may_name("Pooling it, we met.", ordinary)
    assert not privacy._may_name("She'd met the teacher.", ordinary)
    assert not privacy._may_name("We met on Sunday in January.", ordinary)
    assert not privacy._may_name("we met in june.", ordinary)
    assert privacy._may_name("[laughs] So we met Kasia.", ordinary)
    assert privacy._may_name("Grace met the teacher.", ordinary)  # a first name that is a word
    assert privacy._may_name("Bath was where we met.", ordinary)  # a surname: maybe a place
    assert privacy._may_name("we met sarah.", ordinary)  # a first name in lower case
    assert privacy._may_name('They said, "we met Kasia."', ordinary)
