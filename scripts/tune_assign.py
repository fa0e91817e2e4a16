"""Grid-search the assignment settings on part of the gold coding; report on the rest.

Usage: python scripts/tune_assign.py [--dev WP-01,WP-02]
Gold segments are coded as a run codes them (units of their transcripts, with context).
Choosing settings on the dev interviews and reporting the held-out ones keeps the F1 honest.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assign import assign_units, build_prototypes, embedded_mask  # noqa: E402
from pipeline.codebook import load_codebook  # noqa: E402
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder  # noqa: E402
from pipeline.evaluate import agreement, load_gold  # noqa: E402
from pipeline.ingest import read_transcripts  # noqa: E402
from pipeline.segment import load_sentencizer, segment, units_frame  # noqa: E402
from pipeline.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dev", default="WP-01,WP-02")
    args = parser.parse_args()
    dev_ids = set(args.dev.split(","))
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    gold = load_gold(ROOT / "transcripts_sample" / "gold", book)
    encoder = load_encoder()
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    prototypes = build_prototypes(book, encoder, cache)
    transcripts, _ = read_transcripts(ROOT / "transcripts_sample")
    base = Settings()
    units = units_frame(segment(transcripts, load_sentencizer(), base), transcripts)
    vectors, _ = embed_texts(units.loc[embedded_mask(units, base), "text"].tolist(), encoder, cache)
    key = dict(
        zip(
            zip(units["transcript_id"], units["start"], units["end"], strict=True),
            units["unit_id"],
            strict=True,
        )
    )
    gold["unit_id"] = [
        key[(t, int(s), int(e))]
        for t, s, e in zip(gold["transcript_id"], gold["start"], gold["end"], strict=True)
    ]

    def score(ids: set[str], settings: Settings):
        suggestions, _ = assign_units(units, vectors, prototypes, settings)
        by = suggestions.groupby("unit_id")["code_id"].apply(list).to_dict()
        part = gold[gold["transcript_id"].isin(ids)]
        return agreement(part["gold"].tolist(), [by.get(u, []) for u in part["unit_id"]], book.ids)

    held_out = set(gold["transcript_id"]) - dev_ids
    results = []
    grid = itertools.product(
        [0.36, 0.38, 0.40, 0.42, 0.44, 0.46],
        [0.25, 0.5, 0.75],
        [0.04, 0.06, 0.1],
        [1, 2, 3],
        [0.35, 0.5, 0.75],
    )
    for threshold, weight, cutoff, top_k, context in grid:
        settings = Settings(
            threshold=threshold,
            example_weight=weight,
            relative_cutoff=cutoff,
            top_k=top_k,
            context_weight=context,
        )
        results.append((score(dev_ids, settings).micro_f1, settings))
    results.sort(key=lambda r: -r[0])
    for label, settings in [("defaults", base), ("best on dev", results[0][1])]:
        d, t = score(dev_ids, settings), score(held_out, settings)
        print(
            f"{label}: threshold={settings.threshold} example_weight={settings.example_weight}"
            f" relative_cutoff={settings.relative_cutoff} top_k={settings.top_k}"
            f" context_weight={settings.context_weight}"
        )
        for name, r in (("dev", d), ("held-out", t)):
            print(
                f"  {name:9} micro-F1 {r.micro_f1:.3f}  macro-F1 {r.macro_f1:.3f}  "
                f"mean kappa {r.mean_kappa:.3f}"
            )


if __name__ == "__main__":
    main()
