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
from tests.conftest import ROOT, write

LEAKY = """---
interview_id: L-1
role: Head teacher
local_authority: LA-C
---

Interviewer: Who helped most?

Participant: Honestly Morag Campbell did, and Mr O'Neill at Bankhead Academy. You can reach
me on 0141 496 0123 or morag.c@school.sch.uk, we're at G12 8QQ. We use Teams and Glow in P7.

Interviewer: Thanks. And the West Online School?

Participant: It was brilliant for our S3 class.
"""


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer(ProjectNames(schools=["Bankhead Academy"]))


def test_measured_recall_meets_the_targets():
    report = measure_detection(ROOT / "tests" / "data" / "privacy")
    for kind in ("EMAIL", "PHONE", "POSTCODE"):
        assert report[kind]["recall"] == 1.0, (kind, report[kind]["missed"])
    assert report["PERSON"]["recall"] >= 0.9, report["PERSON"]["missed"]
    assert report["PERSON"]["precision"] >= 0.8, report["PERSON"]["false_alarms"]


def test_held_out_recall_meets_the_targets():
    """A set written independently and never used while building the recognisers."""
    report = measure_detection(ROOT / "tests" / "data" / "privacy_holdout")
    for kind in ("EMAIL", "PHONE", "POSTCODE"):
        assert report[kind]["recall"] == 1.0, (kind, report[kind]["missed"])
    assert report["PERSON"]["recall"] >= 0.9, report["PERSON"]["missed"]


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
    findings = scan_transcript(transcript, analyzer)
    kinds = {f.text: f.kind for f in findings}
    assert kinds["Morag Campbell"] == "PERSON" and kinds["Mr O'Neill"] == "PERSON"
    assert kinds["Bankhead Academy"] == "SCHOOL"
    assert kinds["0141 496 0123"] == "PHONE" and kinds["G12 8QQ"] == "POSTCODE"
    assert kinds["morag.c@school.sch.uk"] == "EMAIL"
    assert not {"Teams", "Glow", "P7", "S3", "West Online School"} & set(kinds)
    phone = next(f for f in findings if f.kind == "PHONE")
    assert phone.line == 10 and phone.path.endswith("l.md")
    assert "0141 496 0123" in phone.snippet and str(phone).startswith(f"{phone.path}, line 10")


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
    with pytest.raises(PrivacyError, match="nothing was coded"):
        code_transcripts(
            folder, CODEBOOK, tmp_path / "out2", Settings(cache_dir=cache_dir, privacy="stop")
        )
    assert not (tmp_path / "out2").exists() or not [
        p for p in (tmp_path / "out2").iterdir() if p.is_dir() and not p.name.startswith(".")
    ]
