"""Check gold coding files: columns, known codes, and text equal to the transcript slice.

Usage: python scripts/check_gold.py transcripts_sample/gold/*.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.codebook import load_codebook  # noqa: E402
from pipeline.ingest import read_transcripts  # noqa: E402


def main(paths: list[str]) -> int:
    book = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    transcripts, _ = read_transcripts(ROOT / "transcripts_sample")
    texts = {t.transcript_id: t.text for t in transcripts}
    bad = 0
    for path in paths:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for number, row in enumerate(frame.itertuples(index=False), start=2):
            source = texts[row.transcript_id][int(row.start) : int(row.end)]
            if source != row.text:
                print(f"{path}:{number}: text differs from the transcript slice")
                bad += 1
            for code in filter(None, (c.strip() for c in row.codes.split(";"))):
                if code not in book.ids:
                    print(f"{path}:{number}: unknown code '{code}'")
                    bad += 1
        coded = (frame["codes"].str.strip() != "").sum()
        print(f"{path}: {len(frame)} rows, {coded} coded")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
