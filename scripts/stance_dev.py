"""Stance and abstention variants of the zero-shot rules, measured on development halves only.

First run ``python scripts/zero_shot_data.py`` (encodes the sets into .cache/zero_shot/). Then
``python scripts/stance_dev.py`` prints micro-F1 on the West seeds statements (dev / test
halves) and the NHS answers (dev / test) for the default rules and each variant (issue 13,
point 3): contrastive pair scores, a margin over the paired code, one stance per unit (the top
code's kind; a nearest-example vote; a logistic regression trained on the codebook's own
enabler and inhibitor examples), include notes as prototypes, exclude notes as negatives, and
abstaining when the best two codes are close. Variants are chosen on the dev halves; the sample
gold (machine-written) is never used here. The NHS codebook has no kinds, so stance variants
leave its figures unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.assign import kind_signs, score_matrix  # noqa: E402
from pipeline.codebook import load_codebook  # noqa: E402
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder  # noqa: E402
from scripts.tune_assign import Book, load, micro, predict, truth  # noqa: E402
from scripts.zero_shot_data import nhs_codebook, nhs_dir  # noqa: E402

THRESHOLD, TOP_K, CUTOFF, EXAMPLE_WEIGHT = 0.2, 3, 0.02, 0.5  # the defaults for answers


def main() -> None:
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    west, nhs_book = Book("west", book), Book("nhs_book", nhs_codebook(nhs_dir()))
    seeds, seeds_v = load("seeds")
    nhs, nhs_v = load("nhs")
    protos, proto_v = load("west_protos")
    owner = protos["code"].to_numpy()
    sign = kind_signs([c.kind for c in book.codes])
    partner = west.partners
    paired = np.flatnonzero(partner >= 0)
    encoder = load_encoder()
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    include_v, _ = embed_texts([c.include or c.definition for c in book.codes], encoder, cache)
    exclude_v, _ = embed_texts([c.exclude or c.definition for c in book.codes], encoder, cache)
    example_sign = np.asarray([sign[book.ids.index(o)] for o in owner])
    kinded = example_sign != 0
    stance_model = LogisticRegression(C=3, max_iter=2000).fit(
        proto_v[kinded], example_sign[kinded] > 0
    )

    def scores(v: np.ndarray, option: dict) -> np.ndarray:
        protos_ = west.protos
        if option.get("include"):  # the include note as one more prototype text
            rows, starts, centroids = [], [], []
            for i, code in enumerate(book.codes):
                starts.append(len(rows))
                block = np.vstack([proto_v[owner == code.id], include_v[i : i + 1]])
                rows.extend(block)
                centroid = block.mean(axis=0)
                centroids.append(centroid / np.linalg.norm(centroid))
            protos_ = dataclasses.replace(
                protos_,
                centroids=np.vstack(centroids).astype(np.float32),
                examples=np.vstack(rows).astype(np.float32),
                example_starts=np.asarray(starts),
            )
        s = score_matrix(v, protos_, EXAMPLE_WEIGHT, 0.0)
        if option.get("exclude"):
            s = s - option["exclude"] * (v @ exclude_v.T)
        if option.get("contrast"):  # pair codes move apart by their difference
            s = s.copy()
            s[:, paired] += option["contrast"] * (s[:, paired] - s[:, partner[paired]])
        if option.get("model_shift"):
            z = np.tanh(stance_model.decision_function(v) / 2)
            s = s + option["model_shift"] * np.outer(z, sign)
        return s

    def decide(s: np.ndarray, v: np.ndarray, option: dict) -> np.ndarray:
        p = predict(s, THRESHOLD, TOP_K, CUTOFF)
        if "pair_margin" in option:  # a paired code must beat its opposite by a margin
            p[:, paired] &= ~((s[:, paired] - s[:, partner[paired]]) < option["pair_margin"])
        if option.get("top_kind"):  # one stance per unit: the best code's kind
            p &= ~((sign[None, :] * sign[s.argmax(axis=1)][:, None]) < 0)
        if "vote" in option:  # nearest examples of each kind vote; unsure: no filter
            ids = np.asarray(book.ids)
            near_e = np.sort(v @ proto_v[np.isin(owner, ids[sign > 0])].T, axis=1)[:, -1]
            near_i = np.sort(v @ proto_v[np.isin(owner, ids[sign < 0])].T, axis=1)[:, -1]
            z = near_e - near_i
            stance = np.where(z > option["vote"], 1.0, np.where(z < -option["vote"], -1.0, 0.0))
            p &= ~((sign[None, :] * stance[:, None]) < 0)
        if "abstain_margin" in option:  # best two codes too close: suggest nothing
            ranked = np.sort(s, axis=1)
            p[(ranked[:, -1] - ranked[:, -2]) < option["abstain_margin"]] = False
        return p

    def run(option: dict) -> str:
        cells = []
        for v, b, frame, stance_applies in (
            (seeds_v, west, seeds, True),
            (nhs_v, nhs_book, nhs, False),
        ):
            y = truth(frame["codes"].tolist(), b.ids)
            if stance_applies:
                p = decide(scores(v, option), v, option)
            else:
                only = {k: option[k] for k in ("abstain_margin",) if k in option}
                s = score_matrix(v, b.protos, EXAMPLE_WEIGHT, 0.0)
                p = predict(s, THRESHOLD, TOP_K, CUTOFF)
                if only:
                    ranked = np.sort(s, axis=1)
                    p[(ranked[:, -1] - ranked[:, -2]) < only["abstain_margin"]] = False
            for half in ("dev", "test"):
                m = (frame["split"] == half).to_numpy()
                cells.append(f"{micro(y[m], p[m])[0]:.3f}")
        return " | ".join(cells)

    variants: dict[str, dict] = {"default rules": {}}
    for w in (0.25, 0.5, 1.0):
        variants[f"contrastive pair scores {w}"] = {"contrast": w}
    for m in (0.02, 0.04):
        variants[f"paired code beats its opposite by {m}"] = {"pair_margin": m}
    variants["one stance per unit: the best code's kind"] = {"top_kind": True}
    for t in (0.0, 0.02, 0.05):
        variants[f"nearest-example stance vote, unsure below {t}"] = {"vote": t}
    for w in (0.01, 0.02, 0.05):
        variants[f"stance model on the codebook's examples, shift {w}"] = {"model_shift": w}
    variants["include notes as prototypes"] = {"include": True}
    for w in (0.05, 0.1):
        variants[f"exclude notes as negatives {w}"] = {"exclude": w}
    for m in (0.005, 0.01):
        variants[f"abstain when the best two are within {m}"] = {"abstain_margin": m}
    print("variant | seeds dev | seeds test | NHS dev | NHS test")
    for name, option in variants.items():
        print(f"{name} | {run(option)}", flush=True)
    dev = seeds[seeds["split"] == "dev"]
    kind = np.asarray([sign[book.ids.index(c.split(";")[0])] for c in dev["codes"]])
    said = stance_model.predict(seeds_v[dev.index.to_numpy()])
    accuracy = float(np.mean(said[kind != 0] == (kind[kind != 0] > 0)))
    print(
        f"stance model: the statement's kind right on {accuracy:.3f} of the seeds dev half "
        f"(enablers are {np.mean(kind[kind != 0] > 0):.3f} of it)"
    )


if __name__ == "__main__":
    main()
