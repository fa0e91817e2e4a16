"""Learning curve: held-out F1 against the number of people's corrections used for training.

Usage: python scripts/learning_curve.py [--train WP-01,WP-02] [--json OUT]
Corrections are drawn from the gold coding of the --train interviews, in random order or in
active-learning order (the current model's most uncertain units first); F1 is measured on the
other gold interviews, which training never sees.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assign import build_prototypes, score_matrix, suggest  # noqa: E402
from pipeline.classify import labels_matrix, suggest_with_coder  # noqa: E402
from pipeline.codebook import load_codebook  # noqa: E402
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder  # noqa: E402
from pipeline.evaluate import agreement, gold_in_context, load_gold  # noqa: E402
from pipeline.learn import learn_coder  # noqa: E402
from pipeline.segment import load_sentencizer  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

STEPS = [0, 25, 50, 100, 200, 300, 451]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", default="WP-01,WP-02")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = Settings()
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    gold = load_gold(ROOT / "transcripts_sample" / "gold", book)
    encoder = load_encoder()
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    vectors, _ = gold_in_context(
        gold, ROOT / "transcripts_sample", encoder, load_sentencizer(), settings, cache
    )
    prototypes = build_prototypes(book, encoder, cache)
    scores = score_matrix(vectors, prototypes, settings.example_weight)
    labels = labels_matrix(gold["gold"].tolist(), book.ids)
    # Codebook examples: extra positives for their own code.
    example_texts, example_codes = [], []
    for code in book.codes:
        example_texts += list(code.examples)
        example_codes += [[code.id]] * len(code.examples)
    ex_vectors, _ = embed_texts(example_texts, encoder, cache)
    ex_scores = score_matrix(ex_vectors, prototypes, settings.example_weight)
    ex_labels = labels_matrix(example_codes, book.ids)

    pool = np.flatnonzero(gold["transcript_id"].isin(args.train.split(",")).to_numpy())
    test = np.flatnonzero(~gold["transcript_id"].isin(args.train.split(",")).to_numpy())
    ids = gold["segment_id"].tolist()
    texts = gold["text"].tolist()

    def f1_of(train_rows: np.ndarray) -> tuple[float, float, float, object]:
        if len(train_rows) == 0:
            found = suggest(scores[test], [ids[i] for i in test], book.ids, settings)
            coder = None
        else:
            coder = learn_coder(
                np.vstack([vectors[train_rows], ex_vectors]),
                np.vstack([scores[train_rows], ex_scores]),
                [texts[i] for i in train_rows] + example_texts,
                np.vstack([labels[train_rows], ex_labels]),
                book.ids,
                encoder.fingerprint,
                book.sha256,
                judged=np.arange(len(train_rows) + len(ex_vectors)) < len(train_rows),
            )
            p = coder.probabilities(vectors[test], scores[test], [texts[i] for i in test])
            found = suggest_with_coder(p, scores[test], [ids[i] for i in test], coder, settings)
        by = found.groupby("unit_id")["code_id"].apply(list).to_dict()
        r = agreement(
            [gold["gold"].iloc[i] for i in test], [by.get(ids[i], []) for i in test], book.ids
        )
        return r.micro_f1, r.macro_f1, r.mean_kappa, coder

    rows = []
    for step in [s for s in STEPS if s <= len(pool)]:
        random_scores = []
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(pool)
            random_scores.append(f1_of(order[:step])[:3])
        # Active learning: 25 random to start, then the 25 most uncertain units at a time.
        rng = np.random.default_rng(0)
        chosen = list(rng.permutation(pool)[: min(step, 25)])
        while len(chosen) < step:
            *_, coder = f1_of(np.asarray(chosen))
            rest = np.setdiff1d(pool, chosen)
            p = coder.probabilities(vectors[rest], scores[rest], [texts[i] for i in rest])
            closeness = np.min(np.abs(p - coder.thresholds), axis=1)
            chosen += list(rest[np.argsort(closeness)[: min(25, step - len(chosen))]])
        active = f1_of(np.asarray(chosen, dtype=int))[:3]
        mean = np.mean(random_scores, axis=0)
        rows.append(
            {
                "corrections": step,
                "random_micro_f1": round(float(mean[0]), 3),
                "random_macro_f1": round(float(mean[1]), 3),
                "random_mean_kappa": round(float(mean[2]), 3),
                "active_micro_f1": round(active[0], 3),
                "active_macro_f1": round(active[1], 3),
                "active_mean_kappa": round(active[2], 3),
            }
        )
        print(
            f"{step:>4} corrections: random micro-F1 {mean[0]:.3f} macro {mean[1]:.3f} "
            f"kappa {mean[2]:.3f} | active micro-F1 {active[0]:.3f} macro {active[1]:.3f} "
            f"kappa {active[2]:.3f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"train": args.train, "test_segments": len(test), "curve": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
