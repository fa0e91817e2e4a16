"""Spike: self-training the learned coder on unlabelled units (NHS dev split only)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nhs import ROOT, folds, load_nhs
from bench.quality import attributes_of, micro
from pipeline.assign import build_prototypes, score_matrix
from pipeline.classify import labels_matrix, train_from_labelled
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder
from pipeline.learn import Recipe
from pipeline.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="250")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--high", type=float, default=0.8)
    parser.add_argument("--low", type=float, default=0.2)
    parser.add_argument("--most", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    bench, settings = load_nhs(), Settings()
    encoder = load_encoder(settings.model)
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    vectors, _ = embed_texts(bench.texts, encoder, cache, settings.batch_size)
    prototypes = build_prototypes(bench.codebook, encoder, cache)
    scores = score_matrix(vectors, prototypes, settings.example_weight)
    labels = labels_matrix(bench.codes, bench.codebook.ids)
    train, _ = folds(bench)[0]
    split = GroupShuffleSplit(1, test_size=0.25, random_state=0)
    a, b = next(split.split(train, groups=bench.groups[train]))
    learn, dev = train[a], train[b]
    ids = bench.codebook.ids

    def fit(rows, pseudo_rows=None, pseudo_codes=None):
        extra = None
        if pseudo_rows is not None and len(pseudo_rows):
            extra = (
                vectors[pseudo_rows],
                pseudo_codes,
                [bench.texts[i] for i in pseudo_rows],
                attributes_of(bench, pseudo_rows),
            )
        return train_from_labelled(
            vectors[rows],
            [bench.codes[i] for i in rows],
            bench.codebook,
            encoder,
            settings,
            cache,
            texts=[bench.texts[i] for i in rows],
            attributes=attributes_of(bench, rows),
            recipe=Recipe(),
            unjudged=extra,
        )

    def score(coder, where):
        p = coder.probabilities(
            vectors[where],
            scores[where],
            [bench.texts[i] for i in where],
            attributes_of(bench, where),
        )
        return p

    for size in [int(s) for s in args.sizes.split(",")]:
        base, st = [], []
        for seed in range(args.samples):
            rows = np.random.default_rng(seed).choice(learn, size, replace=False)
            pool = np.setdiff1d(learn, rows)  # the project's other units: no labels read
            coder = fit(rows)
            base.append(micro(coder.decide(score(coder, dev)), labels[dev])["f1"])
            for _ in range(args.rounds):
                p = score(coder, pool)
                decided = coder.decide(p)
                sure = ((p >= args.high) | (p <= args.low)).all(axis=1) & decided.any(axis=1)
                margin = np.abs(p - 0.5).min(axis=1)
                chosen = np.flatnonzero(sure)
                chosen = chosen[np.argsort(-margin[chosen], kind="stable")][: args.most]
                codes = [[ids[c] for c in np.flatnonzero(decided[i])] for i in chosen]
                coder = fit(rows, pool[chosen], codes)
            st.append(micro(coder.decide(score(coder, dev)), labels[dev])["f1"])
            print(
                f"size {size} seed {seed}: base {base[-1]:.3f} self-trained {st[-1]:.3f} "
                f"({len(chosen)} pseudo)",
                time.strftime("%X"),
                flush=True,
            )
        print(size, f"base {np.mean(base):.3f} self-trained {np.mean(st):.3f}", flush=True)


if __name__ == "__main__":
    main()
