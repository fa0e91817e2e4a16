"""The NHS Friends and Family Test benchmark (benchmarks/nhs_fft_v6): data, codebook, folds.

Human-coded survey answers (multi-label, 45 codes) with the question each answered; see
benchmarks/nhs_fft_v6/SOURCE.md for provenance and licences. Folds group a respondent's answers
(the segment id without its " - Qn" suffix), so one person never sits on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from pipeline.codebook import Code, Codebook, Group

ROOT = Path(__file__).resolve().parents[1]
NHS = ROOT / "benchmarks" / "nhs_fft_v6"


@dataclass(frozen=True)
class Benchmark:
    ids: list[str]
    texts: list[str]
    codes: list[list[str]]  # people's codes per answer
    questions: list[str]
    groups: np.ndarray  # respondent of each answer (fold grouping)
    codebook: Codebook


def load_nhs(folder: Path = NHS) -> Benchmark:
    """The answers, their codes and questions, and the 45-code codebook (no examples)."""
    segments = pd.read_csv(folder / "segments.csv", keep_default_na=False, dtype=str)
    meta = pd.read_csv(folder / "segments_meta.csv", keep_default_na=False, dtype=str)
    frame = segments.merge(meta[["segment_id", "question"]], on="segment_id", how="left")
    book = pd.read_csv(folder / "codebook.csv", keep_default_na=False, dtype=str)
    codes = tuple(
        Code(
            id=row.id,
            label=row.label,
            group="fft",
            kind="context",
            # Three codes have no published definition: their label stands in.
            definition=row.definition or row.label,
        )
        for row in book.itertuples()
    )
    codebook = Codebook(
        name="NHS FFT QDC v6",
        groups=(Group(id="fft", label="Patient experience"),),
        codes=codes,
        path=str(folder / "codebook.csv"),
    )
    groups = frame["segment_id"].str.replace(r" - Q\d+$", "", regex=True).to_numpy()
    return Benchmark(
        ids=frame["segment_id"].tolist(),
        texts=frame["text"].tolist(),
        codes=[c.split(";") if c else [] for c in frame["codes"]],
        questions=frame["question"].tolist(),
        groups=groups,
        codebook=codebook,
    )


def folds(bench: Benchmark, n_folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs, grouped by respondent; the same every run."""
    order = np.random.default_rng(0).permutation(len(bench.ids))
    splitter = GroupKFold(n_splits=n_folds)
    out = []
    for train, test in splitter.split(order, groups=bench.groups[order]):
        out.append((np.sort(order[train]), np.sort(order[test])))
    return out


def subset(bench: Benchmark, size: int, seed: int = 0) -> Benchmark:
    """A fixed random sample of respondents (all their answers), for the quick form."""
    respondents = np.unique(bench.groups)
    rng = np.random.default_rng(seed)
    chosen = set(
        rng.permutation(respondents)[: max(1, int(len(respondents) * size / len(bench.ids)))]
    )
    keep = [i for i, g in enumerate(bench.groups) if g in chosen]
    return Benchmark(
        ids=[bench.ids[i] for i in keep],
        texts=[bench.texts[i] for i in keep],
        codes=[bench.codes[i] for i in keep],
        questions=[bench.questions[i] for i in keep],
        groups=bench.groups[keep],
        codebook=bench.codebook,
    )
