"""Evaluate: agreement between the machine's codes and a person's gold coding.

Gold is a CSV (or a folder of CSVs) with ``segment_id,text,codes``; codes are ``;``-separated
and an empty cell means the segment is uncoded. Predictions are ``segment_id,code[,score]``
rows, as ``qcode code-segments`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from spacy.language import Language

from pipeline.assign import (
    ZeroShotCoder,
    add_context,
    build_prototypes,
    embedded_mask,
    suggest,
)
from pipeline.codebook import Codebook
from pipeline.coder import Coder, Units
from pipeline.embed import EmbeddingCache, Encoder, embed_texts
from pipeline.errors import SegmentsFileError
from pipeline.ingest import read_segments_csv, read_transcripts
from pipeline.segment import segment, units_frame
from pipeline.settings import Settings


def split_codes(cell: str) -> list[str]:
    return [c.strip() for c in str(cell).split(";") if c.strip()]


def load_gold(path: str | Path, codebook: Codebook, need_text: bool = True) -> pd.DataFrame:
    """Gold rows with a ``gold`` column of code lists; unknown codes are an error.

    ``need_text=False`` (predictions come from a file): a ``text`` column is optional."""
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise SegmentsFileError("no gold .csv files in this folder", path)
    frames = []
    for file in files:
        frame = read_segments_csv(file, ("segment_id", "text") if need_text else ("segment_id",))
        if "text" not in frame.columns:
            frame["text"] = ""
        if "codes" not in frame.columns:
            raise SegmentsFileError("missing column 'codes'", file, 1)
        for number, cell in enumerate(frame["codes"], start=2):
            for code in split_codes(cell):
                if code not in codebook.ids and code not in codebook.renamed:
                    raise SegmentsFileError(f"unknown code '{code}'", file, number)
        frame["gold"] = [
            [codebook.renamed.get(c, c) for c in split_codes(x)] for x in frame["codes"]
        ]
        frames.append(frame)
    gold = pd.concat(frames, ignore_index=True)
    duplicated = gold["segment_id"].duplicated()
    if duplicated.any():
        raise SegmentsFileError(
            f"segment_id '{gold.loc[duplicated.idxmax(), 'segment_id']}' appears in two files", path
        )
    return gold


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Machine codes as ``segment_id,code[,score]`` rows (one row per suggested code)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise SegmentsFileError("file not found", path) from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SegmentsFileError(f"not a readable CSV ({type(error).__name__})", path) from None
    for column in ("segment_id", "code"):
        if column not in frame.columns:
            raise SegmentsFileError(f"missing column '{column}'", path, 1)
    return frame


def unknown_predicted_codes(predictions: pd.DataFrame, codebook: Codebook) -> dict[str, int]:
    """Predicted codes the codebook lacks (renamed ones count as known), with how many rows
    carry each: they are scored as wrong and listed, so a typo or an old codebook shows."""
    known = set(codebook.ids) | set(codebook.renamed)
    counts = predictions.loc[~predictions["code"].isin(known), "code"].value_counts()
    return {str(code): int(n) for code, n in counts.items()}


def predictions_by_segment(predictions: pd.DataFrame) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for segment_id, code in zip(predictions["segment_id"], predictions["code"], strict=True):
        grouped.setdefault(str(segment_id), []).append(str(code))
    return grouped


@dataclass
class Agreement:
    per_code: pd.DataFrame  # code, support, predicted, precision, recall, f1, kappa
    micro_f1: float
    macro_f1: float
    mean_kappa: float
    exact_set_accuracy: float
    segments: int
    confused_pairs: list[tuple[str, str, int]]  # (gold code, predicted code, count)
    alpha: float = float("nan")  # Krippendorff's alpha over every (segment, code) presence

    def as_dict(self) -> dict:
        return {
            "segments": self.segments,
            "micro_f1": round(self.micro_f1, 4),
            "macro_f1": round(self.macro_f1, 4),
            "mean_kappa": round(self.mean_kappa, 4),
            "exact_set_accuracy": round(self.exact_set_accuracy, 4),
            "krippendorff_alpha": None if self.alpha != self.alpha else round(self.alpha, 4),
            "per_code": self.per_code.round(4).to_dict(orient="records"),
            "confused_pairs": [
                {"gold": g, "predicted": p, "count": n} for g, p, n in self.confused_pairs
            ],
        }


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def agreement(gold: list[list[str]], predicted: list[list[str]], code_ids: list[str]) -> Agreement:
    """Per-code and overall agreement of two codings of the same segments."""
    index = {c: i for i, c in enumerate(code_ids)}
    g = np.zeros((len(gold), len(code_ids)), dtype=bool)
    p = np.zeros_like(g)
    for row, (gs, ps) in enumerate(zip(gold, predicted, strict=True)):
        g[row, [index[c] for c in gs if c in index]] = True
        p[row, [index[c] for c in ps if c in index]] = True
    tp = (g & p).sum(axis=0)
    fp = (~g & p).sum(axis=0)
    fn = (g & ~p).sum(axis=0)
    rows = []
    for i, code in enumerate(code_ids):
        if g[:, i].any() or p[:, i].any():
            kappa = (
                float(cohen_kappa_score(g[:, i], p[:, i]))
                if g[:, i].any() != g[:, i].all() or p[:, i].any() != p[:, i].all()
                else 1.0
            )
        else:
            kappa = float("nan")
        rows.append(
            {
                "code": code,
                "support": int(g[:, i].sum()),
                "predicted": int(p[:, i].sum()),
                "precision": tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0,
                "recall": tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0,
                "f1": _f1(tp[i], fp[i], fn[i]),
                "kappa": kappa,
            }
        )
    per_code = pd.DataFrame(rows)
    present = per_code[per_code["support"] > 0]
    confused: dict[tuple[str, str], int] = {}
    for gs, ps in zip(gold, predicted, strict=True):
        for a in set(gs) - set(ps):
            for b in set(ps) - set(gs):
                confused[(a, b)] = confused.get((a, b), 0) + 1
    pairs = sorted(((a, b, n) for (a, b), n in confused.items()), key=lambda x: (-x[2], x[0]))
    return Agreement(
        per_code=per_code,
        micro_f1=_f1(tp.sum(), fp.sum(), fn.sum()),
        macro_f1=float(present["f1"].mean()) if len(present) else 0.0,
        mean_kappa=float(present["kappa"].mean()) if len(present) else 0.0,
        exact_set_accuracy=float(
            np.mean([set(a) == set(b) for a, b in zip(gold, predicted, strict=True)])
        )
        if gold
        else 0.0,
        segments=len(gold),
        confused_pairs=pairs[:10],
        alpha=presence_alpha(g, p),
    )


def presence_alpha(first: np.ndarray, second: np.ndarray) -> float:
    """Krippendorff's alpha (nominal) for two codings of the same (segment, code) cells.

    Computed by the maintained ``krippendorff`` package; NaN when there is nothing to compare.
    """
    import krippendorff

    data = np.vstack([first.reshape(-1), second.reshape(-1)]).astype(float)
    if data.size == 0 or len(np.unique(data)) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def gold_in_context(
    gold: pd.DataFrame,
    transcripts_dir: Path,
    encoder: Encoder,
    nlp: Language,
    settings: Settings,
    cache: EmbeddingCache | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Vectors of gold segments as a run builds them (units of their transcripts, blended with
    their neighbours), one row per gold row; and all units of the transcripts."""
    missing = [c for c in ("transcript_id", "start", "end") if c not in gold.columns]
    if missing:
        raise SegmentsFileError(
            f"gold needs column(s) {', '.join(missing)} to be coded in context; "
            "leave out --transcripts to code the texts alone",
            transcripts_dir,
        )
    transcripts, _ = read_transcripts(transcripts_dir)
    units = units_frame(segment(transcripts, nlp, settings), transcripts)
    embedded = units[embedded_mask(units, settings)].reset_index(drop=True)
    vectors, _ = embed_texts(embedded["text"].tolist(), encoder, cache, settings.batch_size)
    blended = add_context(
        vectors,
        embedded["transcript_id"].tolist(),
        embedded["turn_index"].tolist(),
        settings.context_weight,
    )
    row_of = {
        (t, s, e): i
        for i, (t, s, e) in enumerate(
            zip(embedded["transcript_id"], embedded["start"], embedded["end"], strict=True)
        )
    }
    keys = list(
        zip(gold["transcript_id"], gold["start"].astype(int), gold["end"].astype(int), strict=True)
    )
    unmatched = [k for k in keys if k not in row_of]
    if unmatched:
        raise SegmentsFileError(
            f"{len(unmatched)} gold segments are not units of the transcripts (first: "
            f"{unmatched[0][0]} characters {unmatched[0][1]}-{unmatched[0][2]}); gold was "
            f"segmented differently (unit setting '{settings.unit}')",
            transcripts_dir,
        )
    return blended[[row_of[k] for k in keys]], units


def code_gold(
    gold: pd.DataFrame,
    codebook: Codebook,
    encoder: Encoder,
    settings: Settings,
    cache: EmbeddingCache | None = None,
    transcripts_dir: Path | None = None,
    nlp: Language | None = None,
    coder: Coder | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Code gold segments with ``coder`` (default zero-shot); returns predictions (segment_id,
    code, score) and the zero-shot score matrix. With ``transcripts_dir`` the segments are
    coded as a run codes them: as units of their transcripts, with neighbouring sentences as
    context; without, like survey answers (code_texts)."""
    if transcripts_dir is not None:
        if nlp is None:
            raise ValueError("coding gold in context needs the spaCy pipeline")
        vectors, _ = gold_in_context(gold, transcripts_dir, encoder, nlp, settings, cache)
    else:
        vectors, _ = embed_texts(gold["text"].tolist(), encoder, cache, settings.batch_size)
    if coder is None:
        coder = ZeroShotCoder(
            build_prototypes(codebook, encoder, cache, settings.batch_size), settings
        )
    units = Units(
        ids=gold["segment_id"].tolist(),
        vectors=vectors,
        texts=gold["text"].tolist(),
        answers=transcripts_dir is None,
    )
    suggested = coder.suggest(units)
    found, scores = suggested.table, suggested.scores
    predictions = pd.DataFrame(
        {"segment_id": found["unit_id"], "code": found["code_id"], "score": found["score"]}
    )
    return predictions, scores


def reviewer_codes(resolved: pd.DataFrame) -> dict[str, dict[str, set[str]]]:
    """reviewer -> unit -> the codes that reviewer holds for the unit (accepted or added)."""
    live = resolved[(resolved["anchor"] != "orphaned") & (resolved["action"] != "note")]
    live = live.sort_values("decision_id").drop_duplicates(
        ["reviewer", "current_unit_id", "current_code_id"], keep="last"
    )
    out: dict[str, dict[str, set[str]]] = {}
    for row in live.itertuples():
        units = out.setdefault(row.reviewer, {})
        codes = units.setdefault(row.current_unit_id, set())
        if row.action in ("accept", "add"):
            codes.add(row.current_code_id)
    return out


def human_agreement(
    resolved: pd.DataFrame, code_ids: list[str]
) -> list[tuple[str, str, Agreement]]:
    """Agreement for every pair of reviewers on the units both of them decided."""
    by_reviewer = reviewer_codes(resolved)
    names = sorted(by_reviewer)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
            if shared:
                pairs.append(
                    (
                        a,
                        b,
                        agreement(
                            [sorted(by_reviewer[a][u]) for u in shared],
                            [sorted(by_reviewer[b][u]) for u in shared],
                            code_ids,
                        ),
                    )
                )
    return pairs


def error_examples(
    segment_ids: list[str],
    texts: list[str],
    gold: list[list[str]],
    predicted: list[list[str]],
    code_ids: list[str],
    limit: int = 10,
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Per code, the segments the machine coded wrongly (false positives) and missed (false
    negatives), with their text: what a codebook author needs to sharpen a definition."""
    out: dict[str, dict[str, list[tuple[str, str]]]] = {
        c: {"false_positives": [], "false_negatives": []} for c in code_ids
    }
    for sid, text, gs, ps in zip(segment_ids, texts, gold, predicted, strict=True):
        for code in set(ps) - set(gs):
            if code in out and len(out[code]["false_positives"]) < limit:
                out[code]["false_positives"].append((sid, text))
        for code in set(gs) - set(ps):
            if code in out and len(out[code]["false_negatives"]) < limit:
                out[code]["false_negatives"].append((sid, text))
    return out


def threshold_curve(
    scores: np.ndarray,
    segment_ids: list[str],
    gold: list[list[str]],
    code_ids: list[str],
    settings: Settings,
    thresholds: list[float] | None = None,
) -> list[dict[str, float]]:
    """Micro precision, recall and F1 of zero-shot suggestions at each threshold."""
    rows = []
    for t in thresholds or [round(0.20 + 0.02 * i, 2) for i in range(26)]:
        found = suggest(scores, segment_ids, code_ids, settings.model_copy(update={"threshold": t}))
        by = found.groupby("unit_id")["code_id"].apply(list).to_dict()
        predicted = [by.get(s, []) for s in segment_ids]
        tp = sum(len(set(g) & set(p)) for g, p in zip(gold, predicted, strict=True))
        fp = sum(len(set(p) - set(g)) for g, p in zip(gold, predicted, strict=True))
        fn = sum(len(set(g) - set(p)) for g, p in zip(gold, predicted, strict=True))
        rows.append(
            {
                "threshold": t,
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / (tp + fn) if tp + fn else 0.0,
                "f1": _f1(tp, fp, fn),
            }
        )
    return rows
