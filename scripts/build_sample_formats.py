"""Build the sample .docx and Teams .vtt transcripts from their Markdown sources.

Run once when a source changes: ``python scripts/build_sample_formats.py``. The outputs are
committed so the sample works without running this.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import docx
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "scripts" / "sample_sources"
SAMPLE = ROOT / "transcripts_sample"
LABEL = re.compile(r"^(Interviewer|Participant):\s+")


def split_source(path: Path) -> tuple[str, dict, list[tuple[str, str]]]:
    text = path.read_text(encoding="utf-8")
    _, head, body = text.split("---\n", 2)
    turns: list[tuple[str, str]] = []
    for para in re.split(r"\n\s*\n", body.strip()):
        match = LABEL.match(para)
        if match:
            turns.append((match.group(1), para[match.end() :].strip()))
        else:
            turns[-1] = (turns[-1][0], turns[-1][1] + "\n\n" + para.strip())
    return head, yaml.safe_load(head), turns


def build_docx(source: Path, target: Path) -> None:
    head, _, turns = split_source(source)
    document = docx.Document()
    document.add_paragraph("---")
    for line in head.strip().splitlines():
        document.add_paragraph(line)
    document.add_paragraph("---")
    for speaker, speech in turns:
        paras = speech.split("\n\n")
        document.add_paragraph(f"{speaker}: {paras[0]}")
        for para in paras[1:]:
            document.add_paragraph(para)
    document.core_properties.author = ""
    document.core_properties.last_modified_by = ""
    document.save(str(target))


def stamp(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def build_vtt(source: Path, target: Path, voices: dict[str, str]) -> None:
    """Teams-style cues: a GUID/n-0 identifier, one or two sentences each, voice tags."""
    _, meta, turns = split_source(source)
    session = uuid.uuid5(uuid.NAMESPACE_URL, source.name)
    lines = ["WEBVTT", ""]
    clock, cue = 3.0, 0
    for speaker, speech in turns:
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(speech.split()))
        for i in range(0, len(sentences), 2):
            chunk = " ".join(sentences[i : i + 2])
            duration = max(1.5, len(chunk.split()) / 2.6)  # about 155 words a minute
            cue += 1
            lines += [
                f"{session}/{cue}-0",
                f"{stamp(clock)} --> {stamp(clock + duration)}",
                f"<v {voices[speaker]}>{chunk}</v>",
                "",
            ]
            clock += duration + 0.4
        clock += 0.8
    target.write_text("\n".join(lines), encoding="utf-8")
    sidecar = {k: v for k, v in meta.items()}
    target.with_suffix(".yaml").write_text(
        yaml.safe_dump(sidecar, sort_keys=False), encoding="utf-8"
    )


if __name__ == "__main__":
    build_docx(SOURCES / "wp04_depute.md", SAMPLE / "wp04_depute.docx")
    build_vtt(
        SOURCES / "wp05_lead_officer.md",
        SAMPLE / "wp05_lead_officer.vtt",
        {"Interviewer": "Evaluator (University)", "Participant": "WP-05 participant"},
    )
    print("wrote wp04_depute.docx, wp05_lead_officer.vtt and .yaml")
