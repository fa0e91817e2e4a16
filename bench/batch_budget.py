"""Encoder batch budget: what a cold encode and an edit's few new sentences cost per budget.

The encoder pads every batch of one token width to a fixed number of rows
(``embed.batch_rows``), so that a text's vector never depends on its batch companions. An
edit's new sentences each fill a whole batch of their width, so the budget (tokens a batch) is
what one new sentence costs; a cold run wants batches large enough to keep the matrix
products efficient. For each budget this encodes the same sentences of a generated corpus (no
cache), and 12 of them alone (an edit), in interleaved rounds (2,048, 512, 256, 2,048, ...: a
shared machine's load falls on all alike).

    python -m bench.batch_budget                   # 1,500 sentences, 3 rounds, fp32
    python -m bench.batch_budget --precision bf16 --limit 8000 --rounds 2 --budgets 512 1024 2048
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

from bench.corpus import write_corpus
from pipeline import embed
from pipeline.embed import load_encoder

RESULTS = Path(__file__).resolve().parent / "results"


def sentences(limit: int, seed: int) -> list[str]:
    """Sentences of at least 4 words from a generated corpus (about 38 a page)."""
    with tempfile.TemporaryDirectory() as folder:
        write_corpus(Path(folder), max(4, limit // 30), seed)
        text = " ".join(p.read_text(encoding="utf-8") for p in sorted(Path(folder).iterdir()))
    found = [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if len(s.split()) >= 4]
    return found[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[2048, 512, 256])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=embed.PRECISIONS)
    parser.add_argument("--out", type=Path, default=None, help="default: by precision")
    args = parser.parse_args()
    suffix = "" if args.precision == "fp32" else f"-{args.precision}"
    args.out = args.out or RESULTS / f"batch-budget{suffix}.json"
    texts = sentences(args.limit, args.seed)
    edit = random.Random(args.seed).sample(texts, 12)
    encoder = load_encoder(precision=args.precision)
    encoder.encode(texts[:50])  # load and warm up once, outside the timings
    timings: dict[int, dict[str, list[float]]] = {b: {"all": [], "edit": []} for b in args.budgets}
    original = embed.batch_rows
    try:
        for _ in range(args.rounds):
            for budget in args.budgets:
                embed.batch_rows = lambda width, size, b=budget: max(1, b // max(width, 8))
                clock = time.perf_counter()
                encoder.encode(texts)
                timings[budget]["all"].append(round(time.perf_counter() - clock, 3))
                clock = time.perf_counter()
                encoder.encode(edit)
                timings[budget]["edit"].append(round(time.perf_counter() - clock, 3))
                print(budget, timings[budget]["all"][-1], timings[budget]["edit"][-1], flush=True)
    finally:
        embed.batch_rows = original
    result = {
        "command": (
            f"python -m bench.batch_budget --precision {args.precision} --limit {args.limit} "
            f"--rounds {args.rounds} --budgets {' '.join(map(str, args.budgets))}"
        ),
        "precision": args.precision,
        "texts": len(texts),
        "edit_texts": len(edit),
        "cpus": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "seconds": {str(b): t for b, t in timings.items()},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["seconds"], indent=1))


if __name__ == "__main__":
    main()
