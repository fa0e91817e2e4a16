"""Quality benchmark: the coder against people's coding of the NHS Friends and Family Test.

One run measures, on the same folds and the same labels: zero-shot (the product's own
``pipeline.assign.code_texts``), the learned coder (``pipeline.learn``) at 0, 25, 50, 100, 250,
500 and 1,000 labels, and two floors (tf-idf + logistic regression; frozen sentence vectors +
logistic regression); micro precision, recall and F1; training and coding time; and an
active-learning simulation (uncertain-first against random order).

Folds group a respondent's answers (5 folds). The n labels of a fold are a random sample of its
training part; the test part is never seen by training and never used to choose a setting
(the learned coder chooses its thresholds by cross-validation on its own labels).

    python -m bench.quality            # full (about an hour on 2 shared cores)
    python -m bench.quality --quick    # CI: a 1,500-answer subset, 2 folds, 0/25/100 labels
    python -m bench.quality --table bench/results/quality-nhs.json   # docs table only
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bench.nhs import ROOT, Benchmark, folds, load_nhs, subset
from pipeline.assign import build_prototypes, code_texts, score_matrix
from pipeline.classify import labels_matrix, train_from_labelled, tune_encoder
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder
from pipeline.learn import LearnedCoder, Recipe
from pipeline.settings import Settings

SIZES = [0, 25, 50, 100, 250, 500, 1000]
QUICK_SIZES = [0, 25, 100]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "quality.md"


def micro(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def top1_forced(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The floors' rule: codes with p >= 0.5, and the best code when none reaches it."""
    keep = probabilities >= threshold
    if len(probabilities):
        keep[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return keep


def one_vs_rest(x_train, y_train: np.ndarray, x_test) -> np.ndarray:
    """Per-code logistic regression (default C); codes never seen stay at probability 0."""
    p = np.zeros((x_test.shape[0], y_train.shape[1]))
    for c in range(y_train.shape[1]):
        y = y_train[:, c]
        if y.any() and not y.all():
            model = LogisticRegression(max_iter=2000).fit(x_train, y)
            p[:, c] = model.predict_proba(x_test)[:, 1]
    return p


def attributes_of(bench: Benchmark, rows: np.ndarray) -> list[dict[str, str]]:
    return [{"question": bench.questions[i]} for i in rows]


def zero_shot_predictions(bench, encoder, cache, settings) -> tuple[np.ndarray, float]:
    """The product's zero-shot coding of every answer, as a (answers, codes) bool matrix."""
    kwargs = {}
    if "attributes" in inspect.signature(code_texts).parameters:
        kwargs["attributes"] = attributes_of(bench, np.arange(len(bench.ids)))
    start = time.perf_counter()
    coded = code_texts(bench.texts, bench.ids, bench.codebook, encoder, settings, cache, **kwargs)
    seconds = time.perf_counter() - start
    row = {s: i for i, s in enumerate(bench.ids)}
    column = {c: i for i, c in enumerate(bench.codebook.ids)}
    predicted = np.zeros((len(bench.ids), len(column)), dtype=bool)
    for segment, code in zip(coded["segment_id"], coded["code"], strict=True):
        predicted[row[segment], column[code]] = True
    return predicted, seconds


def encoding_seconds(encoder, texts: list[str], settings: Settings) -> float:
    """Seconds to encode ``texts`` without the cache (the cost every coding run pays)."""
    start = time.perf_counter()
    encoder.encode(texts, batch_size=settings.batch_size)
    return time.perf_counter() - start


def active_learning(
    bench,
    vectors,
    scores,
    labels,
    fold,
    recipe,
    models,
    start=25,
    step=25,
    stop=250,
    seeds=(0,),
    checkpoint=None,
) -> dict[str, list]:
    """F1 on the test fold as labels grow, by random order and by uncertain-first order.

    Each seed draws its own first ``start`` decisions (the same for both orders); a curve's
    points are ``[decisions, mean F1 over seeds, sd]``, with every seed's F1 under ``per_seed``.
    ``checkpoint`` gets the curves of the seeds done so far after each seed: the whole
    simulation takes more than an hour here, and a stopped run should keep what it measured.
    """
    per_seed: dict[str, list] = {"random": [], "uncertain": []}
    curves: dict[str, list] = {}
    for seed in seeds:
        for order in per_seed:
            per_seed[order].append(
                _al_curve(
                    bench,
                    vectors,
                    scores,
                    labels,
                    fold,
                    recipe,
                    models,
                    order,
                    start,
                    step,
                    stop,
                    seed,
                )
            )
        curves = _al_summary(per_seed, seeds[: len(per_seed["random"])])
        if checkpoint:
            checkpoint(curves)
    return curves


def _al_summary(per_seed: dict[str, list], seeds) -> dict[str, list]:
    """Mean and sd over seeds of each order's curve."""
    curves: dict[str, list] = {}
    for order, runs in per_seed.items():
        f1 = np.array([[point[1] for point in run] for run in runs])
        sd = f1.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(f1.shape[1])
        curves[order] = [
            [point[0], round(float(m), 4), round(float(d), 4)]
            for point, m, d in zip(runs[0], f1.mean(axis=0), sd, strict=True)
        ]
    curves["seeds"] = list(seeds)
    curves["per_seed"] = {order: list(runs) for order, runs in per_seed.items()}
    return curves


def _al_curve(
    bench, vectors, scores, labels, fold, recipe, models, order, start, step, stop, seed
) -> list:
    """One simulated review: retrain after every ``step`` decisions taken in ``order``."""
    train, test = fold
    encoder, cache, settings = models
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(train, start, replace=False))
    points = []
    while True:
        trained = train_on(
            bench, vectors, scores, np.asarray(chosen), recipe, encoder, cache, settings
        )
        coder = trained.coder
        points.append(
            [len(chosen), micro(coder.decide(trained.probabilities(test)), labels[test])["f1"]]
        )
        if len(chosen) >= stop:
            break
        pool = np.setdiff1d(train, chosen)
        if order == "random":
            chosen += list(rng.choice(pool, step, replace=False))
        else:
            pp = trained.probabilities(pool)
            # Uncertain, as the review queue orders units: smallest margin between the
            # unit's top two codes first.
            top2 = -np.sort(-pp, axis=1)[:, :2]
            margin = top2[:, 0] - top2[:, 1]
            chosen += list(pool[np.argsort(margin, kind="stable")[:step]])
    return points


@dataclass
class Trained:
    """A coder trained on some answers, with what it reads: the base vectors and scores, or,
    when it tuned its encoder, that encoder's vectors and scores of the answers asked for."""

    coder: LearnedCoder
    bench: Benchmark
    vectors: np.ndarray  # base vectors of every answer
    scores: np.ndarray  # base zero-shot scores of every answer
    encoder: Any = None  # the tuned encoder, or None
    prototypes: Any = None
    example_weight: float = 0.0

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            v, s = self.vectors[rows], self.scores[rows]
        else:  # coding with a tuned coder encodes the units with its encoder
            v, _ = embed_texts([self.bench.texts[i] for i in rows], self.encoder)
            s = score_matrix(v, self.prototypes, self.example_weight)
        texts = [self.bench.texts[i] for i in rows]
        return self.coder.probabilities(v, s, texts, attributes_of(self.bench, rows))


def train_on(bench, vectors, scores, rows, recipe, encoder, cache, settings) -> Trained:
    """The product's training path (``qcode train`` and ``retrain`` tune and train the same
    way): the encoder tuned on the answers' codes when the recipe says so, then the coder."""
    texts = [bench.texts[i] for i in rows]
    codes = [bench.codes[i] for i in rows]
    with tempfile.TemporaryDirectory() as folder:  # the tuned model stays loaded in memory
        tuned = tune_encoder(encoder, texts, codes, bench.codebook, recipe, Path(folder))
    if tuned is encoder:
        coder = train_from_labelled(
            vectors[rows],
            codes,
            bench.codebook,
            encoder,
            settings,
            cache,
            texts=texts,
            attributes=attributes_of(bench, rows),
            recipe=recipe,
        )
        return Trained(coder, bench, vectors, scores)
    tuned_vectors, _ = embed_texts(texts, tuned)  # no cache: a tuned model is used once here
    coder = train_from_labelled(
        tuned_vectors,
        codes,
        bench.codebook,
        tuned,
        settings,
        None,
        texts=texts,
        attributes=attributes_of(bench, rows),
        recipe=recipe,
    )
    prototypes = build_prototypes(bench.codebook, tuned, None, settings.batch_size)
    return Trained(coder, bench, vectors, scores, tuned, prototypes, settings.example_weight)


def run(
    quick: bool,
    sizes: list[int],
    n_folds: int,
    recipe: Recipe,
    al: bool,
    only_fold: int | None = None,
    checkpoint: Callable[[dict], None] | None = None,
    al_seeds: tuple[int, ...] | None = None,
) -> dict:
    """Every method on every fold and size; ``checkpoint`` gets the result so far after each
    size (a long run on a shared machine leaves what it measured if it is stopped)."""
    bench = load_nhs()
    if quick:
        bench = subset(bench, 1500)
    settings = Settings()
    encoder = load_encoder(settings.model)
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")
    vectors, _ = embed_texts(bench.texts, encoder, cache, settings.batch_size)
    prototypes = build_prototypes(bench.codebook, encoder, cache, settings.batch_size)
    scores = score_matrix(vectors, prototypes, settings.example_weight)
    labels = labels_matrix(bench.codes, bench.codebook.ids)
    zero_shot, zero_shot_seconds = zero_shot_predictions(bench, encoder, cache, settings)
    sample = bench.texts[:300]
    encode_seconds = encoding_seconds(encoder, sample, settings) * len(bench.texts) / len(sample)

    splits = folds(bench, n_folds)
    rows: list[dict] = []

    def snapshot() -> dict:
        return {
            "benchmark": "nhs_fft_v6" + (" (quick subset)" if quick else ""),
            "answers": len(bench.ids),
            "codes": len(bench.codebook.ids),
            "folds": n_folds,
            "sizes": sizes,
            "recipe": asdict(recipe),
            "settings": {"model": settings.model, "precision": settings.precision},
            "timing": {
                "zero_shot_assign_seconds_all_answers_cached_vectors": round(zero_shot_seconds, 2),
                "encode_seconds_all_answers_estimated": round(encode_seconds, 1),
            },
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
            },
            "rows": rows,
            "summary": summarise(rows),
        }

    for f, (train, test) in enumerate(splits):
        if only_fold is not None and f != only_fold:
            continue
        texts_test = [bench.texts[i] for i in test]
        zs = micro(zero_shot[test], labels[test])
        rows.append({"fold": f, "method": "zero-shot", "labels": 0, **zs})
        for size in sizes:
            if size == 0:  # no decisions yet: the coder is the zero-shot coder
                rows.append({**rows[-1], "method": "learned", "train_seconds": 0.0})
                continue
            rng = np.random.default_rng(1000 * f + size)
            chosen = np.sort(rng.choice(train, min(size, len(train)), replace=False))
            start = time.perf_counter()
            trained = train_on(bench, vectors, scores, chosen, recipe, encoder, cache, settings)
            coder = trained.coder
            train_s = time.perf_counter() - start
            start = time.perf_counter()
            predicted = coder.decide(trained.probabilities(test))
            code_s = time.perf_counter() - start
            rows.append(
                {
                    "fold": f,
                    "method": "learned",
                    "labels": size,
                    **micro(predicted, labels[test]),
                    "learned_codes": int(coder.learned.sum()),
                    "train_seconds": round(train_s, 2),
                    "code_seconds": round(code_s, 3),
                }
            )
            y = labels[chosen]
            tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
            x_train = tfidf.fit_transform([bench.texts[i] for i in chosen])
            p = one_vs_rest(x_train, y, tfidf.transform(texts_test))
            rows.append(
                {
                    "fold": f,
                    "method": "floor: tf-idf + LR",
                    "labels": size,
                    **micro(top1_forced(p), labels[test]),
                }
            )
            p = one_vs_rest(vectors[chosen], y, vectors[test])
            rows.append(
                {
                    "fold": f,
                    "method": "floor: frozen vectors + LR",
                    "labels": size,
                    **micro(top1_forced(p), labels[test]),
                }
            )
            print(
                f"fold {f} labels {size}: "
                + ", ".join(f"{r['method']} {r['f1']:.3f}" for r in rows[-3:]),
                flush=True,
            )
            if checkpoint:
                checkpoint(snapshot())
    result = snapshot()
    if al:
        result["active_learning"] = active_learning(
            bench,
            vectors,
            scores,
            labels,
            splits[0],
            recipe,
            (encoder, cache, settings),
            stop=100 if quick else 250,
            seeds=al_seeds or ((0,) if quick else (0, 1, 2)),
            checkpoint=(
                (lambda curves: checkpoint({**result, "active_learning": curves}))
                if checkpoint
                else None
            ),
        )
    cache.close()
    return result


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["method"], r["labels"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for method, size in keys:
        part = [r for r in rows if r["method"] == method and r["labels"] == size]
        entry = {"method": method, "labels": size, "folds": len(part)}
        for metric in ("f1", "precision", "recall", "train_seconds"):
            values = [r[metric] for r in part if metric in r]
            if values:
                entry[metric] = round(float(np.mean(values)), 3)
                entry[f"{metric}_sd"] = (
                    round(float(np.std(values, ddof=1)), 3) if len(values) > 1 else 0.0
                )
        out.append(entry)
    return out


def table(result: dict) -> str:
    """Markdown: F1 (mean ± sd) per method and number of labels, then precision/recall."""
    summary = result["summary"]
    methods = ["learned", "floor: tf-idf + LR", "floor: frozen vectors + LR"]
    sizes = sorted(result["sizes"])
    lines = [
        "| labels | zero-shot | learned coder | P / R (learned) | train s | tf-idf + LR "
        "| frozen vectors + LR |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    zs = next(s for s in summary if s["method"] == "zero-shot")
    cell = lambda s: f"{s['f1']:.3f} ± {s['f1_sd']:.3f}" if s else "–"  # noqa: E731
    for size in sizes:
        found = {
            m: next((s for s in summary if s["method"] == m and s["labels"] == size), None)
            for m in methods
        }
        learned = found["learned"]
        lines.append(
            f"| {size} | {cell(zs) if size == 0 else ''} | {cell(learned)} | "
            f"{learned['precision']:.2f} / {learned['recall']:.2f} | "
            f"{learned.get('train_seconds', 0):.1f} | "
            f"{cell(found['floor: tf-idf + LR'])} | {cell(found['floor: frozen vectors + LR'])} |"
        )
    return "\n".join(lines)


def active_learning_table(curves: dict) -> str:
    """Markdown: F1 (mean ± sd over seeds) by number of decisions, per order."""
    sizes = [point[0] for point in curves["random"]]
    lines = [
        "| decisions | " + " | ".join(str(n) for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for order, name in (("random", "random"), ("uncertain", "most uncertain first")):
        cells = [
            f"{p[1]:.3f} ± {p[2]:.3f}" if len(p) > 2 and p[2] else f"{p[1]:.3f}"
            for p in curves[order]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_docs(result: dict, path: Path, command: str) -> None:
    """Replace the generated block of docs/quality.md with this result's table."""
    begin, end = "<!-- quality-table:begin -->", "<!-- quality-table:end -->"
    block = "\n".join(
        [
            begin,
            f"`{command}` — {result['benchmark']}, {result['answers']} answers, "
            f"{result['codes']} codes, {result['folds']} folds grouped by respondent; "
            f"load average at the end {result['machine']['load_average_1_5_15']} on "
            f"{result['machine']['cpus']} CPUs.",
            "",
            table(result),
            end,
        ]
    )
    text = path.read_text(encoding="utf-8") if path.exists() else f"{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + block + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI form: subset, 2 folds")
    parser.add_argument("--sizes", help="comma-separated numbers of labels")
    parser.add_argument("--folds", type=int)
    parser.add_argument(
        "--fold", type=int, help="run only this fold (0-based); --merge joins the results"
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="join one-fold results JSON into one result"
    )
    parser.add_argument("--no-active-learning", action="store_true")
    parser.add_argument("--al-seeds", help="comma-separated seeds of the active-learning runs")
    parser.add_argument("--out", type=Path, help="results JSON")
    parser.add_argument("--table", type=Path, help="only write docs/quality.md from this JSON")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(path.read_text(encoding="utf-8")) for path in args.merge]
        # A fold run again for more sizes repeats its zero-shot row: keep each row once.
        rows = {(r["fold"], r["method"], r["labels"]): r for part in parts for r in part["rows"]}
        result = {**parts[0], "rows": list(rows.values())}
        result["sizes"] = sorted({r["labels"] for r in result["rows"]})
        result["summary"] = summarise(result["rows"])
        result["machine"]["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
        result["command"] = " ".join(["python -m bench.quality", *sys.argv[1:]])
        # A part may itself be a merged result (more sizes added later): keep its own parts.
        result["parts"] = [c for part in parts for c in (part.get("parts") or [part["command"]])]
        out = args.out or RESULTS / "quality-nhs.json"
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")
        write_docs(result, DOCS, result["command"])
        print(table(result))
        return
    if args.table:
        result = json.loads(args.table.read_text(encoding="utf-8"))
        write_docs(result, DOCS, result.get("command", "python -m bench.quality"))
        print(table(result))
        return
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else (QUICK_SIZES if args.quick else SIZES)
    )
    n_folds = args.folds or (2 if args.quick else 5)
    command = " ".join(["python -m bench.quality", *sys.argv[1:]])
    out = args.out or RESULTS / ("quality-nhs-quick.json" if args.quick else "quality-nhs.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        result["command"] = command
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")

    result = run(
        args.quick,
        sizes,
        n_folds,
        Recipe(),
        not args.no_active_learning,
        args.fold,
        save,
        tuple(int(x) for x in args.al_seeds.split(",")) if args.al_seeds else None,
    )
    save(result)
    if not args.quick and not args.sizes and args.fold is None:
        write_docs(result, DOCS, command)
    print(table(result))
    if "active_learning" in result:
        print(active_learning_table(result["active_learning"]))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
