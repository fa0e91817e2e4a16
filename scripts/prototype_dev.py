"""Which texts should stand for a code? Prototype variants measured on development halves.

First run ``python scripts/zero_shot_data.py`` (encodes the sets into .cache/zero_shot/). Then
``python scripts/prototype_dev.py`` prints micro-F1 (default rules: answers' threshold 0.2 for
the West seeds statements and NHS answers, the transcript threshold 0.35 with context for the
sample gold) for each way of building a code's prototype texts:

- whole: ``label. definition`` and the examples (the rule before session 8);
- split: the definition cut into sentences (``codebook.definition_sentences``), the first with
  the label, then the examples, for every code;
- split without examples: split only for codes that have no examples, whole otherwise (the
  rule since session 8, ``Code.prototype_texts``).

The variant is chosen by the mean of the seeds and NHS dev halves; test halves and the sample
gold (machine-written) are printed, never used to choose.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assign import build_prototypes, score_matrix  # noqa: E402
from pipeline.codebook import Code, definition_sentences, load_codebook  # noqa: E402
from pipeline.embed import EmbeddingCache, load_encoder  # noqa: E402
from scripts.tune_assign import (  # noqa: E402
    blend,
    load,
    load_gold_units,
    micro,
    predict,
    truth,
)
from scripts.zero_shot_data import nhs_codebook, nhs_dir  # noqa: E402

ANSWER_THRESHOLD, TRANSCRIPT_THRESHOLD, TOP_K, CUTOFF, EXAMPLE_WEIGHT = 0.2, 0.35, 3, 0.02, 0.5


def whole(code: Code) -> list[str]:
    return [f"{code.label}. {code.definition}", *code.examples]


def split(code: Code) -> list[str]:
    first, *rest = definition_sentences(code.definition) or [code.definition]
    return [f"{code.label}. {first}", *rest, *code.examples]


def split_without_examples(code: Code) -> list[str]:
    return whole(code) if code.examples else split(code)


def main() -> None:
    west_book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    nhs_book = nhs_codebook(nhs_dir())
    encoder = load_encoder()
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    seeds, seeds_v = load("seeds")
    nhs, nhs_v = load("nhs")
    units, units_v, gold_rows, turns, gold_dev = load_gold_units()
    gold_v = blend(units_v, turns, 0.5)
    y_seeds = truth(seeds["codes"].tolist(), west_book.ids)
    y_nhs = truth(nhs["codes"].tolist(), nhs_book.ids)
    y_gold = truth(units["gold"].tolist(), west_book.ids)

    print("prototype texts | seeds dev | seeds test | NHS dev | NHS test | gold dev | gold test")
    for name, texts_of in (
        ("whole", whole),
        ("split", split),
        ("split without examples", split_without_examples),
    ):
        west = build_prototypes(west_book, encoder, cache, texts_of=texts_of)
        cells, dev = [], []
        for v, protos, y, frame in ((seeds_v, west, y_seeds, seeds), (nhs_v, None, y_nhs, nhs)):
            protos = protos or build_prototypes(nhs_book, encoder, cache, texts_of=texts_of)
            p = predict(
                score_matrix(v, protos, EXAMPLE_WEIGHT, 0.0), ANSWER_THRESHOLD, TOP_K, CUTOFF
            )
            for half in ("dev", "test"):
                m = (frame["split"] == half).to_numpy()
                cells.append(micro(y[m], p[m])[0])
            dev.append(cells[-2])
        s = score_matrix(gold_v, west, EXAMPLE_WEIGHT, 0.0)
        p = predict(s, TRANSCRIPT_THRESHOLD, TOP_K, CUTOFF)
        for m in (gold_rows & gold_dev, gold_rows & ~gold_dev):
            cells.append(micro(y_gold[m], p[m])[0])
        row = " | ".join(f"{c:.3f}" for c in cells)
        print(f"{name} | {row} | dev mean {np.mean(dev):.3f}", flush=True)


if __name__ == "__main__":
    main()
