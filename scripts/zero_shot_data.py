"""Encode the zero-shot tuning sets once and cache them as .npy under .cache/zero_shot/.

Sets: the West seeds statements (benchmarks/west_seeds, dev/test halves fixed there), the NHS
Friends and Family Test answers (../shared/benchmarks/nhs_fft_v6 or benchmarks/nhs_fft_v6, split
in half here with seed 13), and the sample gold sentences with their transcripts' units (dev
WP-01, WP-02; test WP-03, WP-07). scripts/tune_assign.py sweeps rules on these vectors in numpy.

Usage: python scripts/zero_shot_data.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.codebook import Code, Codebook, Group, load_codebook  # noqa: E402
from pipeline.embed import EmbeddingCache, embed_texts, load_encoder  # noqa: E402
from pipeline.evaluate import load_gold  # noqa: E402
from pipeline.ingest import read_transcripts  # noqa: E402
from pipeline.segment import load_sentencizer, segment, units_frame  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

OUT = ROOT / ".cache" / "zero_shot"
NHS_SPLIT_SEED = 13


def nhs_dir() -> Path:
    for path in (
        ROOT / "benchmarks" / "nhs_fft_v6",
        ROOT.parent.parent / "shared" / "benchmarks" / "nhs_fft_v6",
        Path("/work/shared/benchmarks/nhs_fft_v6"),
    ):
        if (path / "segments.csv").exists():
            return path
    raise SystemExit("NHS benchmark not found (benchmarks/nhs_fft_v6)")


def nhs_codebook(path: Path) -> Codebook:
    """The NHS framework as a qcode codebook (no kinds: every code is 'context')."""
    table = pd.read_csv(path / "codebook.csv").fillna("")
    codes = [
        Code(
            id=r.id, label=r.label, group="nhs", kind="context", definition=r.definition or r.label
        )
        for r in table.itertuples()
    ]
    return Codebook(name="NHS FFT v6", groups=(Group(id="nhs", label="NHS"),), codes=tuple(codes))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder()
    cache = EmbeddingCache(ROOT / ".cache" / "embeddings.sqlite")

    def encode(name: str, texts: list[str]) -> None:
        vectors, n = embed_texts(texts, encoder, cache)
        np.save(OUT / f"{name}.npy", vectors)
        print(f"{name}: {len(texts)} texts ({n} encoded)", flush=True)

    nlp = load_sentencizer()
    # West seeds: statements whole and sentence by sentence (for the unit comparison).
    seeds = pd.read_csv(ROOT / "benchmarks" / "west_seeds" / "statements.csv").merge(
        pd.read_csv(ROOT / "benchmarks" / "west_seeds" / "statements_meta.csv")
    )
    seeds.to_csv(OUT / "seeds.csv", index=False)
    encode("seeds", seeds["text"].tolist())
    rows = []
    for r in seeds.itertuples():
        for i, sent in enumerate(nlp(r.text).sents):
            if sent.text.strip():
                rows.append({"segment_id": r.segment_id, "i": i, "text": sent.text.strip()})
    sents = pd.DataFrame(rows)
    sents.to_csv(OUT / "seeds_sentences.csv", index=False)
    encode("seeds_sentences", sents["text"].tolist())

    # NHS: every answer; split in half here.
    path = nhs_dir()
    nhs = pd.read_csv(path / "segments.csv").merge(pd.read_csv(path / "segments_meta.csv"))
    nhs["codes"] = nhs["codes"].fillna("")
    nhs = nhs[nhs["text"].fillna("").str.strip().ne("")].reset_index(drop=True)  # 4 blank answers
    order = np.random.default_rng(NHS_SPLIT_SEED).permutation(len(nhs))
    nhs["split"] = np.where(order < len(nhs) // 2, "dev", "test")
    nhs.to_csv(OUT / "nhs.csv", index=False)
    encode("nhs", nhs["text"].tolist())

    # Sample gold: every unit of the four gold transcripts (participants), and their turns.
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    gold = load_gold(ROOT / "transcripts_sample" / "gold", book)
    transcripts, _ = read_transcripts(ROOT / "transcripts_sample")
    units = units_frame(segment(transcripts, nlp, Settings()), transcripts)
    units = units[units["transcript_id"].isin(set(gold["transcript_id"]))]
    units = units[units["speaker_kind"] == "participant"].reset_index(drop=True)
    key = {
        (t, s, e): i
        for i, (t, s, e) in enumerate(zip(units.transcript_id, units.start, units.end, strict=True))
    }
    gold_codes = {
        key[(t, int(s), int(e))]: ";".join(g)
        for t, s, e, g in zip(gold.transcript_id, gold.start, gold.end, gold.gold, strict=True)
    }
    units["gold"] = [gold_codes.get(i, "-") for i in range(len(units))]  # "-": not gold-coded
    units[["unit_id", "transcript_id", "turn_index", "text", "codable", "gold"]].to_csv(
        OUT / "gold_units.csv", index=False
    )
    encode("gold_units", units["text"].tolist())
    # Prototypes: every prototype text of both codebooks, in code order.
    for name, cb in (("west", book), ("nhs_book", nhs_codebook(path))):
        texts, owner, first = [], [], []
        for c in cb.codes:
            for j, t in enumerate(c.prototype_texts()):
                texts.append(t)
                owner.append(c.id)
                first.append(j == 0)
        pd.DataFrame({"code": owner, "definition": first, "text": texts}).to_csv(
            OUT / f"{name}_protos.csv", index=False
        )
        encode(f"{name}_protos", texts)

    turns = units.groupby(["transcript_id", "turn_index"], sort=False)["text"].apply(" ".join)
    turns.reset_index().to_csv(OUT / "gold_turns.csv", index=False)
    encode("gold_turns", turns.tolist())


if __name__ == "__main__":
    main()
