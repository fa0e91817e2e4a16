"""False alarms of the anonymity check on ordinary text: findings per 10,000 words.

Usage: python scripts/privacy_precision.py transcripts_sample [/work/shared/seeds ...]

A folder of transcripts is scanned as it is (with its privacy_names.yaml if it has one). A
folder of other Markdown documents (evaluation reports) is first turned into transcripts, one
participant turn per paragraph, in .cache/privacy_precision/. Every finding is listed with its
count, for a person to judge which are personal data (a cited author, a city) and which are
false alarms; the totals give findings per 10,000 words.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.ingest import find_transcripts, read_transcripts  # noqa: E402
from pipeline.privacy import (  # noqa: E402
    load_project_names,
    names_file,
    scan_transcripts,
    shared_analyzer,
)


def as_transcripts(folder: Path) -> Path:
    """Markdown documents as one-participant transcripts (paragraphs become turns)."""
    out = ROOT / ".cache" / "privacy_precision" / folder.name
    out.mkdir(parents=True, exist_ok=True)
    for doc in sorted(folder.glob("*.md")):
        paragraphs = [p.strip() for p in doc.read_text(encoding="utf-8").split("\n\n")]
        turns = [f"Participant: {' '.join(p.split())}" for p in paragraphs if p]
        body = "\n\n".join(["Interviewer: Please read the document.", *turns])
        (out / doc.name).write_text(f"---\ninterview_id: {doc.stem}\n---\n\n{body}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--names", type=Path, help="names file (default: the folder's own)")
    args = parser.parse_args()
    for folder in args.folders:
        source = (
            folder
            if (
                find_transcripts(folder)
                and any(p.suffix != ".md" for p in find_transcripts(folder))
            )
            or (folder / "privacy_names.yaml").exists()
            else as_transcripts(folder)
        )
        names = load_project_names(names_file(args.names, folder))
        transcripts, problems = read_transcripts(source)
        words = sum(len(t.text.split()) for t in transcripts)
        findings = scan_transcripts(transcripts, shared_analyzer, names)
        per_kind = Counter(f.kind for f in findings)
        print(
            f"\n{folder}: {len(transcripts)} files, {words} words, {len(findings)} findings "
            f"({10000 * len(findings) / max(words, 1):.1f} per 10,000 words)"
        )
        print("  by kind: " + ", ".join(f"{k} {n}" for k, n in per_kind.most_common()))
        for (kind, text, channel), n in sorted(
            Counter((f.kind, f.text, f.channel) for f in findings).items()
        ):
            print(f"  {kind:<13} {n:>3}  {text!r}  ({channel})")
        for p in problems:
            print(f"  problem: {p}")


if __name__ == "__main__":
    main()
