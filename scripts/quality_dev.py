"""Try learned-coder recipes on the NHS development split (never a test fold).

The split: fold 0's training part (bench.nhs.folds), cut 75/25 by respondent. Each recipe is
trained through the product's ``train_from_labelled`` on n random answers of the first part and
scored (micro-F1) on the second, mean of ``--samples`` draws.

Usage: python scripts/quality_dev.py "{'base': Recipe(), 'no words': Recipe(words_weight=0)}" \
    --sizes 250,1000 --samples 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nhs import ROOT, folds, load_nhs
from bench.quality import micro, train_on
from pipeline.assign import build_prototypes, score_matrix
from pipeline.classify import labels_matrix
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder
from pipeline.learn import Recipe
from pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipes", help="a Python dict of name -> Recipe(...)")
    parser.add_argument("--sizes", default="250,1000")
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    recipes = eval(args.recipes, {"Recipe": Recipe})  # a developer's own command line
    bench, settings = load_nhs(), Settings()
    encoder = load_encoder(settings.model)
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    vectors, _ = embed_texts(bench.texts, encoder, cache, settings.batch_size)
    prototypes = build_prototypes(bench.codebook, encoder, cache)
    scores = score_matrix(vectors, prototypes, settings.example_weight)
    labels = labels_matrix(bench.codes, bench.codebook.ids)
    train, _ = folds(bench)[0]  # the test part of fold 0 is never read
    split = GroupShuffleSplit(1, test_size=0.25, random_state=0)
    a, b = next(split.split(train, groups=bench.groups[train]))
    learn, dev = train[a], train[b]
    for name, recipe in recipes.items():
        out = {}
        for size in [int(s) for s in args.sizes.split(",")]:
            f1s, seconds = [], []
            for seed in range(args.samples):
                rows = np.random.default_rng(seed).choice(learn, size, replace=False)
                start = time.perf_counter()
                trained = train_on(bench, vectors, scores, rows, recipe, encoder, cache, settings)
                seconds.append(time.perf_counter() - start)
                p = trained.probabilities(dev)
                coder = trained.coder
                f1s.append(micro(coder.decide(p), labels[dev])["f1"])
            out[size] = f"{np.mean(f1s):.3f} ({np.mean(seconds):.0f} s)"
        print(name, out, flush=True)


if __name__ == "__main__":
    main()
