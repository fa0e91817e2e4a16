"""Benchmark: the anonymity check of one edited transcript, with and without the NER cache.

What a new process (a fresh ``qcode run`` after an edit, or the first edit under ``--watch``)
pays to scan the one transcript that changed: NER over all of it, or, with the NER cache on
disk (``pipeline.privacy.ner_cache``), only over the stretches the edit changed. Both are timed
in this process, in interleaved rounds, each round starting with nothing kept in memory, so
the ratio is measured in one run on a shared machine. It also checks that both find the same.

    python -m bench.ner_cache
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.run import RESULTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=70, help="corpus size (one file is edited)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from pipeline.environment import configure_environment

    configure_environment()
    from bench.corpus import edit_transcript, write_corpus
    from pipeline import privacy
    from pipeline.ingest import read_transcript

    folder = Path(tempfile.mkdtemp(prefix="qcode-ner-cache-"))
    try:
        write_corpus(folder / "corpus", args.pages, args.seed)
        path = sorted((folder / "corpus").glob("*.md"))[1]
        before = read_transcript(path)
        edit_transcript(path, seed=100)
        after = read_transcript(path)
        analyzer = privacy.build_analyzer()
        names = privacy.ProjectNames()
        cache = privacy.ner_cache(folder / "ner.sqlite")
        privacy.scan_transcripts([before], lambda: analyzer, names, cache=cache)  # the first run

        sent: list[int] = []
        real = privacy._entities_in

        def counted(texts: list[str], nlp: object) -> list:
            sent.append(len(texts))
            return real(texts, nlp)

        privacy._entities_in = counted

        def scan(with_cache: bool) -> tuple[float, int, list[tuple]]:
            privacy.forget_kept()  # as in a new process (findings kept per process too)
            sent.clear()
            clock = time.perf_counter()
            found = privacy.scan_transcripts(
                [after], lambda: analyzer, names, cache=cache if with_cache else None
            )
            seconds = time.perf_counter() - clock
            return seconds, sum(sent), [(f.start, f.end, f.kind) for f in found]

        rounds = {"without": [], "with": []}
        texts, same = {}, True
        for _ in range(args.rounds):
            for name, with_cache in (("without", False), ("with", True)):
                seconds, n, found = scan(with_cache)
                rounds[name].append(round(seconds, 3))
                texts[name] = n
                texts.setdefault("findings", found)
                same &= found == texts["findings"]
        privacy._entities_in = real
        cache.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    without, with_cache = (statistics.median(rounds[k]) for k in ("without", "with"))
    report = {
        "pages": args.pages,
        "edited_transcript_words": len(after.text.split()),
        "rounds_s": rounds,
        "median_without_s": without,
        "median_with_s": with_cache,
        "ratio": round(with_cache / without, 3),
        "texts_to_ner": {"without": texts["without"], "with": texts["with"]},
        "same_findings": same,
        "command": "python -m bench.ner_cache",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ner-cache.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"one edited transcript ({report['edited_transcript_words']} words), nothing in memory: "
        f"without the NER cache {without:.2f} s ({texts['without']} texts to NER), with it "
        f"{with_cache:.2f} s ({texts['with']} texts); ratio {report['ratio']}; same findings: "
        f"{same}\nResults: {out}"
    )


if __name__ == "__main__":
    main()
