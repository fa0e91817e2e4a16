"""Benchmark: the anonymity check's first scan, with the NER shortcut and with NER on all text.

It also times the scan as a run does it (NER in worker processes when the text is large;
``pipeline.privacy.ner_workers``) and checks that it finds the same as one process.

Both scans run in this process on the same generated corpus, one after the other, so the ratio
is measured in one run (the machine is shared; absolute times move). It also compares what the
two find, kind by kind: the shortcut must not lose people or places that NER on every sentence
finds.

    python -m bench.privacy_scan --pages 700
    python -m bench.privacy_scan --nhs

``--nhs`` scans people's own words instead of the generated corpus: the NHS Friends and Family
Test answers (benchmarks/nhs_fft_v6), which name staff, wards, hospitals and towns nobody
planted. They are written as interviews of 60 answers each, every answer a "Participant:" turn
after the question it answered as an "Interviewer:" turn.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.run import RESULTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=700)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nhs", action="store_true", help="scan the NHS answers instead")
    args = parser.parse_args()

    from pipeline.environment import configure_environment

    configure_environment()
    from bench.corpus import write_corpus
    from pipeline import privacy
    from pipeline.ingest import read_transcripts

    with tempfile.TemporaryDirectory() as folder:
        if args.nhs:
            write_nhs_interviews(Path(folder))
        else:
            write_corpus(Path(folder), args.pages, args.seed)
        transcripts, _ = read_transcripts(Path(folder))
    analyzer = privacy.build_analyzer()
    names = privacy.ProjectNames()

    def scan(workers: int | None = 1) -> tuple[float, set[tuple[str, int, int, str, str]]]:
        privacy.forget_kept()  # each scan starts from nothing this process kept
        clock = time.perf_counter()
        found = privacy.scan_transcripts(transcripts, lambda: analyzer, names, workers=workers)
        spans = {(f.transcript_id, f.start, f.end, f.kind, f.text) for f in found}
        return time.perf_counter() - clock, spans

    workers = privacy.ner_workers(sum(len(t.text) for t in transcripts))
    parallel_s, parallel = scan(workers)  # what a run does: NER in worker processes if large
    shortcut_s, shortcut = scan()
    chosen = privacy._may_name
    privacy._may_name = lambda piece, ordinary: True  # every sentence to NER
    try:
        everything_s, everything = scan()
    finally:
        privacy._may_name = chosen
    lost = sorted(everything - shortcut)
    allowed = privacy._allowed_words(names)
    scans = [privacy._Scan.of(t, allowed) for t in transcripts]
    ner_chars = sum(len(text) for scan in scans for _, text in privacy._ner_jobs(scan))
    all_chars = sum(len(scan.text) for scan in scans)
    report = {
        "corpus": "nhs_fft_v6" if args.nhs else "generated",
        "pages": None if args.nhs else args.pages,
        "transcripts": len(transcripts),
        "words": sum(len(t.text.split()) for t in transcripts),
        "ner_workers": workers,
        "with_workers_s": round(parallel_s, 2),
        "workers_find_the_same": parallel == shortcut,
        "shortcut_s": round(shortcut_s, 2),
        "all_text_s": round(everything_s, 2),
        "ratio": round(shortcut_s / everything_s, 3),
        "ner_input_share": round(ner_chars / all_chars, 3),  # of the text, with its context
        "findings_shortcut": len(shortcut),
        "findings_all_text": len(everything),
        "only_with_all_text": [{"kind": k, "text": t} for _, _, _, k, t in lost],
        "only_with_shortcut": [
            {"kind": k, "text": t} for *_, k, t in sorted(shortcut - everything)
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"privacy-scan-{'nhs' if args.nhs else args.pages}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    corpus = "NHS answers" if args.nhs else f"{args.pages} pages"
    print(
        f"{corpus}: {workers} NER workers {parallel_s:.1f} s (same findings: "
        f"{parallel == shortcut}); shortcut {shortcut_s:.1f} s, "
        f"NER on all text {everything_s:.1f} s "
        f"(ratio {report['ratio']}); NER reads {report['ner_input_share']:.0%} of the text; "
        f"findings {len(shortcut)} vs {len(everything)}"
    )
    for kind in sorted({k for _, _, _, k, _ in lost}):
        texts = sorted({t for _, _, _, k2, t in lost if k2 == kind})
        print(f"  only with NER on all text, {kind}: {', '.join(texts[:20])}")
    print(f"Results: {path}")


def write_nhs_interviews(folder: Path, per_file: int = 60) -> None:
    """The NHS answers as interview transcripts (see the module notes)."""
    from bench.nhs import load_nhs

    nhs = load_nhs()
    answers = list(zip(nhs.questions, nhs.texts, strict=True))
    for number, first in enumerate(range(0, len(answers), per_file)):
        turns = [
            f"Interviewer: {' '.join(question.split())}\n\nParticipant: {' '.join(text.split())}"
            for question, text in answers[first : first + per_file]
        ]
        body = "\n\n".join(turns)
        (folder / f"nhs_{number:03d}.md").write_text(
            f"---\ninterview_id: NHS-{number:03d}\n---\n\n{body}\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
