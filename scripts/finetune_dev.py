"""Spike: does fine-tuning the encoder on the labels help the learned coder? (NHS dev split only)

Same split as scripts/quality_dev.py (fold 0's training part, 75/25 by respondent).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nhs import ROOT, folds, load_nhs  # noqa: E402
from bench.quality import attributes_of, micro, train_on  # noqa: E402
from pipeline.assign import build_prototypes, score_matrix  # noqa: E402
from pipeline.classify import labels_matrix  # noqa: E402
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder  # noqa: E402
from pipeline.learn import Recipe  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.tune import fine_tune  # noqa: E402


def finetune(model, texts, label_rows, code_texts, epochs, batch, lr, scale, seed, seconds=None):
    import torch

    torch.manual_seed(seed)
    st = copy.deepcopy(model)
    st.train()
    opt = torch.optim.AdamW(st.parameters(), lr=lr)
    pairs = [(i, c) for i, row in enumerate(label_rows) for c in np.flatnonzero(row)]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    steps = 0
    st.max_seq_length = 128
    for _ in range(epochs):
        with torch.no_grad():  # the codes' side is fixed for an epoch: the texts move to it
            st.eval()
            ep = torch.nn.functional.normalize(
                st(st.tokenize(code_texts))["sentence_embedding"], dim=1
            )
            st.train()
        order = rng.permutation(len(pairs))
        for s in range(0, len(order), batch):
            chosen = [pairs[k] for k in order[s : s + batch]]
            a = st.tokenize([texts[i] for i, _ in chosen])
            ea = torch.nn.functional.normalize(st(a)["sentence_embedding"], dim=1)
            sim = ea @ ep.T * scale
            # other positive codes of the same text are not negatives
            mask = torch.zeros_like(sim, dtype=torch.bool)
            for r, (i, c) in enumerate(chosen):
                others = np.flatnonzero(label_rows[i])
                others = others[others != c]
                mask[r, torch.as_tensor(others, dtype=torch.long)] = True
            sim = sim.masked_fill(mask, -1e4)
            target = torch.as_tensor([c for _, c in chosen])
            loss = torch.nn.functional.cross_entropy(sim, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if seconds and time.perf_counter() - start > seconds:
                break
    st.eval()
    return st, steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="250")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--max-steps", type=int, default=80)
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
    code_texts = [f"{c.label}. {c.definition}" for c in bench.codebook.codes]
    recipe = Recipe()
    for size in [int(s) for s in args.sizes.split(",")]:
        base, tuned = [], []
        for seed in range(args.samples):
            rows = np.random.default_rng(seed).choice(learn, size, replace=False)
            print("start", size, seed, time.strftime("%X"), flush=True)
            if args.baseline:
                coder = train_on(bench, vectors, rows, recipe, encoder, cache, settings)
                p = coder.probabilities(vectors[dev], scores[dev], [bench.texts[i] for i in dev],
                                        attributes_of(bench, dev))
                base.append(micro(coder.decide(p), labels[dev])["f1"])
                print("base", base[-1], time.strftime("%X"), flush=True)
            t0 = time.perf_counter()
            st = fine_tune(encoder, [bench.texts[i] for i in rows], labels[rows], code_texts,
                           epochs=args.epochs, max_steps=args.max_steps, seed=seed,
                           learning_rate=args.lr)
            steps, secs = args.max_steps, time.perf_counter() - t0
            print("tuned in", secs, steps, flush=True)
            enc2 = copy.copy(encoder)
            enc2._model = st
            enc2.fingerprint = encoder.fingerprint + f"-tuned{seed}-{time.time()}"
            with tempfile.TemporaryDirectory() as tmp:
                c2 = EmbeddingCache(Path(tmp) / "e.sqlite")
                t0 = time.perf_counter()
                need = np.concatenate([rows, dev])
                v_need, _ = embed_texts([bench.texts[i] for i in need], enc2, c2, settings.batch_size)
                enc_s = time.perf_counter() - t0
                v2 = np.zeros_like(vectors)
                v2[need] = v_need
                proto2 = build_prototypes(bench.codebook, enc2, c2)
                s2 = score_matrix(v2, proto2, settings.example_weight)
                zs = micro(s2[dev] >= 0.5, labels[dev])["f1"]
                coder = train_on(bench, v2, rows, recipe, enc2, c2, settings)
                p = coder.probabilities(v2[dev], s2[dev], [bench.texts[i] for i in dev],
                                        attributes_of(bench, dev))
                tuned.append(micro(coder.decide(p), labels[dev])["f1"])
            print(f"size {size} seed {seed}: base {base[-1] if base else '-'} tuned {tuned[-1]:.3f}"
                  f" ({steps} steps, {secs:.0f} s train, {enc_s:.0f} s encode {len(need)})", flush=True)
        print(size, "base", np.mean(base) if base else "-", "tuned", np.mean(tuned), flush=True)


if __name__ == "__main__":
    main()
