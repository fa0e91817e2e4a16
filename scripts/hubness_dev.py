"""Spike: per-code centring of zero-shot scores (hubness), dev halves then test halves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.codebook import load_codebook  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from scripts.tune_assign import (  # noqa: E402
    Book,
    blend,
    load,
    load_gold_units,
    micro,
    predict,
    truth,
)
from scripts.zero_shot_data import nhs_codebook, nhs_dir  # noqa: E402


def centre(s: np.ndarray, lam: float, k: int | None) -> np.ndarray:
    """Subtract lam * (each code's mean score over the units, or over its k nearest units)."""
    m = -np.sort(-s, axis=0)[:k].mean(axis=0) if k else s.mean(axis=0)
    return s - lam * (m - m.mean())


def main() -> None:
    st = Settings()
    rule = dict(example_weight=st.example_weight, stance_weight=0.0, pair_theme=0.0)
    west = Book("west", load_codebook(ROOT / "codebooks" / "west_partnership.yaml"))
    nhs_book = Book("nhs_book", nhs_codebook(nhs_dir()))
    seeds, seeds_v = load("seeds")
    nhs, nhs_v = load("nhs")
    units, units_v, gold_rows, turn_key, gold_dev = load_gold_units()
    sets = {
        "seeds": (
            west.scores(seeds_v, rule),
            truth(seeds["codes"].tolist(), west.ids),
            seeds["split"].to_numpy() == "dev",
            st.answer_threshold,
        ),
        "nhs": (
            nhs_book.scores(nhs_v, rule),
            truth(nhs["codes"].tolist(), nhs_book.ids),
            nhs["split"].to_numpy() == "dev",
            st.answer_threshold,
        ),
        "gold": (
            west.scores(blend(units_v, turn_key, st.context_weight), rule)[gold_rows],
            truth(units["gold"].tolist(), west.ids)[gold_rows],
            gold_dev[gold_rows],
            st.threshold,
        ),
    }
    print(
        "settings: threshold",
        st.threshold,
        "answer",
        st.answer_threshold,
        "top_k",
        st.top_k,
        "cutoff",
        st.relative_cutoff,
        "context",
        st.context_weight,
    )
    for k in (None, 5, 20):
        for lam in (0.0, 0.25, 0.5, 0.75, 1.0):
            out = []
            for name, (s, y, dev, thr) in sets.items():
                c = centre(s, lam, k)  # centring uses all units of the set (no labels)
                for half, m in (("dev", dev), ("test", ~dev)):
                    f, _p, _r = micro(y[m], predict(c[m], thr, st.top_k, st.relative_cutoff))
                    out.append(f"{name} {half} {f:.3f}")
            print(f"k={k} lam={lam}: " + " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
