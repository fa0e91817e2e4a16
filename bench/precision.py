"""Encoder precision: speed and quality of int8 (and bf16) against fp32, same texts, one run.

For each precision it encodes the same texts without any cache (the cost a cold run pays),
twice, interleaved with the other precisions (fp32, int8, fp32, int8, ...: a shared machine's
load falls on all of them alike), and keeps the faster of the two. Quality: the cosine of each
text's vector to its fp32 vector, and the product's zero-shot coding (``code_texts``) of the
NHS Friends and Family Test answers against people's codes (micro-F1), with a paired bootstrap
of the F1 difference to fp32 over answers: the 95% interval says what "within noise" is.

    python -m bench.precision                      # all 6,205 NHS answers, fp32 and int8
    python -m bench.precision --limit 1500 --precisions fp32 int8 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench.nhs import ROOT, load_nhs, subset
from bench.quality import micro, zero_shot_predictions
from pipeline.classify import labels_matrix
from pipeline.embed import load_encoder
from pipeline.settings import Settings

RESULTS = ROOT / "bench" / "results"


def bootstrap_f1_difference(
    a: np.ndarray, b: np.ndarray, truth: np.ndarray, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of micro-F1(b) - micro-F1(a), answers resampled with replacement."""
    rng = np.random.default_rng(seed)
    counts = []
    for pred in (a, b):
        tp = (pred & truth).sum(axis=1)
        fp = (pred & ~truth).sum(axis=1)
        fn = (~pred & truth).sum(axis=1)
        counts.append((tp, fp, fn))
    diffs = np.empty(rounds)
    n = len(truth)
    for r in range(rounds):
        rows = rng.integers(0, n, n)
        f1 = []
        for tp, fp, fn in counts:
            t, f, m = tp[rows].sum(), fp[rows].sum(), fn[rows].sum()
            f1.append(2 * t / (2 * t + f + m))
        diffs[r] = f1[1] - f1[0]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="a random subset of this many answers")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--out", type=Path, default=RESULTS / "precision-nhs.json")
    args = parser.parse_args()
    if args.precisions[0] != "fp32":
        args.precisions.insert(0, "fp32")

    bench = load_nhs()
    if args.limit:
        bench = subset(bench, args.limit)
    texts = [t for t in bench.texts if t.strip()]
    encoders = {p: load_encoder(precision=p) for p in args.precisions}
    base = Settings(precision="fp32")
    for encoder in encoders.values():
        encoder.encode(texts[: base.batch_size], base.batch_size)  # warm-up
    seconds: dict[str, list[float]] = {p: [] for p in args.precisions}
    vectors: dict[str, np.ndarray] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(2):
        for precision, encoder in encoders.items():
            clock = time.perf_counter()
            vectors[precision] = encoder.encode(texts, base.batch_size)
            seconds[precision].append(time.perf_counter() - clock)
            loads.append(os.getloadavg()[0])

    truth = labels_matrix(bench.codes, bench.codebook.ids)
    predicted = {}
    for precision, encoder in encoders.items():
        settings = Settings(precision=precision)
        predicted[precision], _ = zero_shot_predictions(bench, encoder, None, settings)
    result: dict = {
        "command": " ".join(["python -m bench.precision", *sys.argv[1:]]),
        "texts": len(texts),
        "batch_size": base.batch_size,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min_during": [round(x, 2) for x in loads],
        },
        "precisions": {},
    }
    for precision in args.precisions:
        cosine = (vectors[precision] * vectors["fp32"]).sum(axis=1)
        best = min(seconds[precision])
        row = {
            "encode_s": [round(s, 2) for s in seconds[precision]],
            "texts_per_s": round(len(texts) / best, 1),
            "speed_vs_fp32": round(min(seconds["fp32"]) / best, 2),
            "cosine_to_fp32_min": round(float(cosine.min()), 5),
            "cosine_to_fp32_p01": round(float(np.percentile(cosine, 1)), 5),
            "cosine_to_fp32_mean": round(float(cosine.mean()), 5),
            "zero_shot": {k: round(v, 4) for k, v in micro(predicted[precision], truth).items()},
        }
        if precision != "fp32":
            low, high = bootstrap_f1_difference(predicted["fp32"], predicted[precision], truth)
            row["zero_shot_f1_minus_fp32"] = round(
                row["zero_shot"]["f1"] - result["precisions"]["fp32"]["zero_shot"]["f1"], 4
            )
            row["zero_shot_f1_minus_fp32_95ci"] = [round(low, 4), round(high, 4)]
            row["answers_coded_differently"] = int(
                (predicted[precision] != predicted["fp32"]).any(axis=1).sum()
            )
        result["precisions"][precision] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
