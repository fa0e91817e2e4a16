"""Tune the zero-shot rules on development halves; report the held-out halves once.

First run ``python scripts/zero_shot_data.py`` (encodes the sets once into .cache/zero_shot/).
Then ``python scripts/tune_assign.py`` sweeps, in numpy, the rules of pipeline/assign.py:
example weight, stance weight (the codebook's enabler/inhibitor axis), threshold, top-k,
relative cutoff and, for transcripts, context weight; it picks the setting with the best mean
micro-F1 over the dev halves of the West seeds statements and the NHS answers, and prints dev
and test for: the old defaults, plain top-1 similarity to each code's centroid, and the chosen
rules. ``--units`` adds the unit comparison (sentence, sentence with context, turn, topic segment)
on the sample gold and the seeds statements.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assign import (  # noqa: E402
    Prototypes,
    kind_signs,
    score_matrix,
    stance_axis,
)
from pipeline.codebook import load_codebook  # noqa: E402
from scripts.zero_shot_data import nhs_codebook, nhs_dir  # noqa: E402

DATA = ROOT / ".cache" / "zero_shot"


def load(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.read_csv(DATA / f"{name}.csv", keep_default_na=False), np.load(DATA / f"{name}.npy")


def load_gold_units() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sample gold's units and vectors; which units carry gold coding, each unit's turn (for
    the context blend), and which are in the dev interviews (WP-01, WP-02)."""
    units, vectors = load("gold_units")
    gold_rows = units["gold"].ne("-").to_numpy()  # units that carry gold coding
    turn_key = (units["transcript_id"] + "#" + units["turn_index"].astype(str)).to_numpy()
    gold_dev = units["transcript_id"].isin(["WP-01", "WP-02"]).to_numpy()
    return units, vectors, gold_rows, turn_key, gold_dev


def prototypes_from_cache(name: str, codebook) -> Prototypes:
    """pipeline.assign.build_prototypes, from the cached prototype vectors."""
    table, vectors = load(f"{name}_protos")
    owner = table["code"].to_numpy()
    starts = np.array([int(np.argmax(owner == c.id)) for c in codebook.codes])
    centroids = np.vstack([vectors[owner == c.id].mean(axis=0) for c in codebook.codes])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    signs = kind_signs([c.kind for c in codebook.codes])
    axis = stance_axis(vectors, np.repeat(signs, np.diff([*starts, len(owner)])))
    return Prototypes(codebook.ids, centroids, vectors, starts, signs, axis)


class Book:
    def __init__(self, name: str, codebook, pairs_only: bool = False):
        self.protos = prototypes_from_cache(name, codebook)
        self.ids = codebook.ids
        self.partners = stance_pairs(codebook)
        if pairs_only:  # variant: the stance moves only the codes of a pair
            signs = np.where(self.partners >= 0, self.protos.signs, 0.0)
            self.protos = dataclasses.replace(self.protos, signs=signs)

    def scores(self, v: np.ndarray, rule: dict) -> np.ndarray:
        """score_matrix, plus the pair-theme variant (measured, not adopted: see docs)."""
        s = score_matrix(v, self.protos, rule["example_weight"], 0.0)
        if rule["pair_theme"]:  # enabler and inhibitor of a theme share their mean similarity
            paired = np.flatnonzero(self.partners >= 0)
            theme = (s[:, paired] + s[:, self.partners[paired]]) / 2
            s[:, paired] += rule["pair_theme"] * (theme - s[:, paired])
        if rule["stance_weight"] and self.protos.axis is not None:
            s += rule["stance_weight"] * np.outer(v @ self.protos.axis, self.protos.signs)
        return s


def stance_pairs(codebook) -> np.ndarray:
    """Each code's paired opposite (index) or -1: an enabler and an inhibitor of one group whose
    ids name the same theme, one extending the other (ts.trust / ts.trust_lacking)."""
    codes = list(codebook.codes)
    last = [c.id.rsplit(".", 1)[-1] for c in codes]
    partners = np.full(len(codes), -1, dtype=np.int64)
    for i, code in enumerate(codes):
        found = [
            j
            for j, other in enumerate(codes)
            if {code.kind, other.kind} == {"enabler", "inhibitor"}
            and other.group == code.group
            and (last[j].startswith(last[i]) or last[i].startswith(last[j]))
        ]
        if len(found) == 1:
            partners[i] = found[0]
    return partners


def truth(cells: list[str], ids: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(ids)}
    y = np.zeros((len(cells), len(ids)), dtype=bool)
    for r, cell in enumerate(cells):
        for c in filter(None, str(cell).split(";")):
            if c in index:
                y[r, index[c]] = True
    return y


def predict(s: np.ndarray, threshold: float, top_k: int, cutoff: float) -> np.ndarray:
    order = np.argsort(-s, axis=1, kind="stable")
    ranked = np.take_along_axis(s, order, axis=1)
    keep = (ranked >= threshold) & (ranked >= ranked[:, :1] - cutoff)
    keep[:, top_k:] = False
    p = np.zeros_like(keep)
    np.put_along_axis(p, order, keep, axis=1)
    return p


def micro(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    tp = float((y & p).sum())
    fp, fn = float((~y & p).sum()), float((y & ~p).sum())
    f1 = 2 * tp / max(1.0, 2 * tp + fp + fn)
    return f1, tp / max(1.0, tp + fp), tp / max(1.0, tp + fn)


def blend(v: np.ndarray, groups: np.ndarray, weight: float) -> np.ndarray:
    """pipeline.assign.add_context on cached vectors (neighbours in the same turn)."""
    if weight == 0:
        return v
    same = groups[1:] == groups[:-1]
    out = v.copy()
    out[1:] += weight * v[:-1] * same[:, None]
    out[:-1] += weight * v[1:] * same[:, None]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", action="store_true", help="also compare coding units")
    parser.add_argument(
        "--pairs-only", action="store_true", help="variant: stance moves paired codes only"
    )
    args = parser.parse_args()
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    west = Book("west", book, pairs_only=args.pairs_only)
    nhs_book = Book("nhs_book", nhs_codebook(nhs_dir()))
    seeds, seeds_v = load("seeds")
    nhs, nhs_v = load("nhs")
    units, units_v, gold_rows, turn_key, gold_dev = load_gold_units()

    sets = {
        "seeds": (seeds, seeds_v, west, seeds["codes"].tolist(), seeds["split"].to_numpy()),
        "nhs": (nhs, nhs_v, nhs_book, nhs["codes"].tolist(), nhs["split"].to_numpy()),
    }
    y = {k: truth(s[3], s[2].ids) for k, s in sets.items()}
    y_gold = truth(units["gold"].tolist(), west.ids)

    def run(key: str, rule: dict, half: str) -> tuple[float, float, float]:
        _, v, b, _, split = sets[key]
        thr = rule.get("answer_threshold", rule["threshold"])
        p = predict(b.scores(v, rule), thr, rule["top_k"], rule["relative_cutoff"])
        m = split == half
        return micro(y[key][m], p[m])

    def run_gold(rule: dict, half: str) -> tuple[float, float, float]:
        v = blend(units_v, turn_key, rule.get("context_weight", 0.0))
        s = west.scores(v, rule)
        p = predict(s, rule["threshold"], rule["top_k"], rule["relative_cutoff"])
        m = gold_rows & (gold_dev if half == "dev" else ~gold_dev)
        return micro(y_gold[m], p[m])

    old_rule = dict(
        threshold=0.42,
        top_k=3,
        relative_cutoff=0.06,
        example_weight=0.5,
        stance_weight=0.0,
        pair_theme=0.0,
        context_weight=0.5,
    )
    plain = dict(
        threshold=-1.0,
        top_k=1,
        relative_cutoff=0.0,
        example_weight=0.0,
        stance_weight=0.0,
        pair_theme=0.0,
        context_weight=0.0,
    )
    # Two thresholds: transcripts hold small talk that should stay uncoded, calibrated on the
    # sample gold's dev interviews (43% of its sentences are uncoded); answers and report
    # statements are all coded, so theirs is calibrated on the seeds and NHS dev halves.
    grid = []
    dev = {k: sets[k][4] == "dev" for k in sets}
    gdev = gold_rows & gold_dev
    thresholds = [-1.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
    for ew, sw, pt in itertools.product(
        [0.0, 0.25, 0.5], [0.0, 0.05, 0.1, 0.15, 0.2, 0.3], [0.0, 0.5, 1.0]
    ):
        scoring = dict(example_weight=ew, stance_weight=sw, pair_theme=pt)
        s = {k: sets[k][2].scores(sets[k][1][dev[k]], scoring) for k in sets}
        for cw in (0.0, 0.25, 0.5):
            s[f"gold{cw}"] = west.scores(blend(units_v, turn_key, cw)[gdev], scoring)
        for k, cut in ((1, 0.0), (2, 0.02), (2, 0.04), (3, 0.02), (3, 0.04), (3, 0.06)):
            answers = max(
                (
                    sum(micro(y[key][dev[key]], predict(s[key], t, k, cut))[0] for key in sets) / 2,
                    t,
                )
                for t in thresholds
            )
            transcripts = max(
                (micro(y_gold[gdev], predict(s[f"gold{cw}"], t, k, cut))[0], t, cw)
                for t in thresholds
                for cw in (0.0, 0.25, 0.5)
            )
            rule = dict(
                answer_threshold=answers[1],
                threshold=transcripts[1],
                top_k=k,
                relative_cutoff=cut,
                context_weight=transcripts[2],
                **scoring,
            )
            grid.append(((2 * answers[0] + transcripts[0]) / 3, answers[0], transcripts[0], rule))
    grid.sort(key=lambda g: -g[0])
    best = dict(grid[0][3])
    print("top of the sweep (mean dev micro-F1 of seeds, NHS, gold; answers; gold; rule):")
    for g in grid[:8]:
        print(f"  {g[0]:.3f}  {g[1]:.3f} {g[2]:.3f}  {g[3]}")
    for name, values in (
        ("stance_weight", [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]),
        ("pair_theme", [0.0, 0.5, 1.0]),
        ("example_weight", [0.0, 0.25, 0.5]),
        ("top_k", [1, 2, 3]),
    ):
        bests = [max((g[0] for g in grid if g[3][name] == v), default=0.0) for v in values]
        print(
            f"best with {name}:",
            "  ".join(f"{v}: {b:.3f}" for v, b in zip(values, bests, strict=True)),
        )
    for label, rule in (
        ("old defaults", old_rule),
        ("plain top-1 centroid", plain),
        ("chosen on dev", best),
    ):
        print(f"{label}: {rule}")
        for key in sets:
            for half in ("dev", "test"):
                f, p, r = run(key, rule, half)
                print(f"  {key:6} {half:4} micro-F1 {f:.3f} (P {p:.3f} R {r:.3f})")
        for half in ("dev", "test"):
            f, p, r = run_gold(rule, half)
            print(f"  gold   {half:4} micro-F1 {f:.3f} (P {p:.3f} R {r:.3f})")
    # Stance alone: the same chosen rule without the stance axis.
    no_stance = {**best, "stance_weight": 0.0}
    print(
        "chosen rule without stance:",
        {k: round(run(k, no_stance, "dev")[0], 3) for k in sets},
        "gold dev",
        round(run_gold(no_stance, "dev")[0], 3),
    )
    if args.units:
        compare_units(
            best, west, seeds, seeds_v, units, units_v, y_gold, gold_rows, gold_dev, turn_key
        )


def compare_units(
    rule, west, seeds, seeds_v, units, units_v, y_gold, gold_rows, gold_dev, turn_key
) -> None:
    """Sentence, sentence+context, turn and topic-segment units, scored per gold sentence."""
    turns, turns_v = load("gold_turns")
    turn_index = {
        k: i
        for i, k in enumerate(
            (turns["transcript_id"] + "#" + turns["turn_index"].astype(str)).tolist()
        )
    }
    per_sentence_turn = turns_v[[turn_index[k] for k in turn_key]]

    def scored(v):
        s = west.scores(v, rule)
        return predict(s, rule["threshold"], rule["top_k"], rule["relative_cutoff"])

    def topic_segments(threshold: float) -> np.ndarray:
        """Consecutive sentences of a turn stay together while they stay similar."""
        seg = np.zeros(len(units_v), dtype=np.int64)
        n = 0
        for i in range(1, len(units_v)):
            same_turn = turn_key[i] == turn_key[i - 1]
            if not same_turn or float(units_v[i] @ units_v[i - 1]) < threshold:
                n += 1
            seg[i] = n
        out = np.zeros_like(units_v)
        for s in np.unique(seg):
            m = seg == s
            c = units_v[m].mean(axis=0)
            out[m] = c / np.linalg.norm(c)
        return out

    variants = {"sentence": units_v}
    for w in (0.25, 0.5, 1.0):
        variants[f"sentence+context {w}"] = blend(units_v, turn_key, w)
    variants["turn (whole turn encoded)"] = per_sentence_turn
    for t in (0.2, 0.3, 0.4):
        variants[f"topic segment (break below {t})"] = topic_segments(t)
    print("unit comparison on the sample gold (scored per gold sentence; dev / test micro-F1):")
    for name, v in variants.items():
        p = scored(v)
        d = micro(y_gold[gold_rows & gold_dev], p[gold_rows & gold_dev])[0]
        t = micro(y_gold[gold_rows & ~gold_dev], p[gold_rows & ~gold_dev])[0]
        print(f"  {name:34} {d:.3f} / {t:.3f}")
    # Turn-level scoring: union of gold codes over a turn vs the unit's predictions pooled.
    print("scored per turn (gold = union of the turn's sentence codes; dev / test):")
    keys = np.unique(turn_key[gold_rows])
    for name, v in variants.items():
        p = scored(v)
        yt = np.vstack([y_gold[(turn_key == k) & gold_rows].any(axis=0) for k in keys])
        pt = np.vstack([p[(turn_key == k) & gold_rows].any(axis=0) for k in keys])
        dev = np.array(
            [units["transcript_id"][turn_key == k].iloc[0] in ("WP-01", "WP-02") for k in keys]
        )
        print(f"  {name:34} {micro(yt[dev], pt[dev])[0]:.3f} / {micro(yt[~dev], pt[~dev])[0]:.3f}")
    # Seeds: the statement whole vs sentence by sentence (union of predictions).
    sents, sents_v = load("seeds_sentences")
    y = truth(seeds["codes"].tolist(), west.ids)
    whole = scored(seeds_v)
    ps = scored(sents_v)
    union = np.vstack(
        [ps[(sents["segment_id"] == sid).to_numpy()].any(axis=0) for sid in seeds["segment_id"]]
    )
    order = {sid: i for i, sid in enumerate(seeds["segment_id"])}
    grp = sents["segment_id"].map(order).to_numpy()
    ctx = scored(blend(sents_v, grp, 0.5))
    union_ctx = np.vstack([ctx[grp == i].any(axis=0) for i in range(len(seeds))])
    dev = seeds["split"].eq("dev").to_numpy()
    for name, p in (
        ("statement whole", whole),
        ("sentences (union)", union),
        ("sentences+context 0.5 (union)", union_ctx),
    ):
        print(
            f"  seeds {name:30} dev {micro(y[dev], p[dev])[0]:.3f}"
            f" test {micro(y[~dev], p[~dev])[0]:.3f}"
        )


if __name__ == "__main__":
    main()
