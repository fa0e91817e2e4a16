"""Recording an edit run in the project store, against recording every row (the baseline).

Why: the store keeps units and suggestions per transcript version (migration 7), so a run in
which one transcript changed writes that transcript's rows only. Before, every run stored
every suggestion again and moved every unit to itself, which grew with the corpus (14.7 s of
a 45 s edit at 7,000 pages, under load). This measures both in one process and one store, on
a corpus the size of the speed benchmark's (816 transcripts, 260,000 units and 224,000
suggestions at 7,000 pages; smaller with ``--pages``), as a ratio.

    python -m bench.store_edit --pages 7000 --rounds 3

The baseline is the same ``record_run`` given no versions: then every transcript counts as a
new version and all its rows are written, which is what every run did before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.codebook import load_codebook
from pipeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
UNITS_PER_PAGE = 37  # the speed benchmark's corpus: 260,633 units at 7,000 pages
TRANSCRIPTS_PER_PAGE = 816 / 7000


def synthetic_run(pages: int, codes: list[str], seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units and suggestions the size of a ``pages``-page corpus (text of unit length)."""
    rng = np.random.default_rng(seed)
    n_units = pages * UNITS_PER_PAGE
    n_transcripts = max(2, round(pages * TRANSCRIPTS_PER_PAGE))
    transcript = np.sort(rng.integers(0, n_transcripts, n_units))
    unit_ids = [f"{i:016x}" for i in rng.permutation(n_units * 4)[:n_units]]
    units = pd.DataFrame(
        {
            "unit_id": unit_ids,
            "transcript_id": [f"bench_{t:04d}" for t in transcript],
            "turn_index": np.arange(n_units) % 40,
            "speaker": "Participant",
            "speaker_kind": "participant",
            "start": np.arange(n_units) * 130,
            "end": np.arange(n_units) * 130 + 120,
            "text": [f"unit {i} " + "words of a spoken sentence " * 4 for i in range(n_units)],
            "codable": rng.random(n_units) < 0.66,
            "role": "teacher",
            "local_authority": "",
            "workstream": "",
            "network": "",
            "top_code": rng.choice(codes, n_units),
            "top_score": rng.random(n_units).astype(np.float32),
        }
    )
    coded = units.sample(frac=0.56, random_state=seed)
    suggestions = pd.DataFrame(
        {
            "unit_id": coded["unit_id"].to_numpy(),
            "code_id": rng.choice(codes, len(coded)),
            "score": rng.random(len(coded)).astype(np.float32),
            "rank": 1,
            "margin": rng.random(len(coded)).astype(np.float32),
            "transcript_id": coded["transcript_id"].to_numpy(),
        }
    ).drop_duplicates(["unit_id", "code_id"])
    return units, suggestions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=7000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store-edit.json")
    args = parser.parse_args()
    codebook = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    units, suggestions = synthetic_run(args.pages, codebook.ids)
    transcripts = sorted(set(units["transcript_id"]))
    edited = transcripts[len(transcripts) // 2]
    versions = {t: f"v0:{t}" for t in transcripts}
    edit_s: list[float] = []
    full_s: list[float] = []
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "p.sqlite") as store:
        record = store.record_run
        record({"run_id": "first"}, [], units, suggestions, codebook, versions)
        for round_ in range(args.rounds):  # interleaved, so load affects both alike
            versions = {**versions, edited: f"v{round_ + 1}:{edited}"}
            clock = time.perf_counter()
            record({"run_id": f"edit-{round_}"}, [], units, suggestions, codebook, versions)
            edit_s.append(time.perf_counter() - clock)
            clock = time.perf_counter()
            store.record_run({"run_id": f"full-{round_}"}, [], units, suggestions, codebook)
            full_s.append(time.perf_counter() - clock)
            # The next edit is against a run recorded with versions, as in a watching process.
            record({"run_id": f"again-{round_}"}, [], units, suggestions, codebook, versions)
        stored = store.db.execute("SELECT COUNT(*) FROM suggestions").fetchone()[0]
    result = {
        "command": "python -m bench.store_edit "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "pages": args.pages,
        "transcripts": len(transcripts),
        "units": len(units),
        "suggestions": len(suggestions),
        "edit_s": [round(x, 3) for x in edit_s],
        "full_s": [round(x, 3) for x in full_s],
        "edit_over_full_median": round(statistics.median(edit_s) / statistics.median(full_s), 4),
        "suggestion_rows_stored_at_end": stored,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
