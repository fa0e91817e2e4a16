"""Edits under ``qcode run --watch`` on an existing work folder, timed as ``make bench`` does.

Why: ``make bench`` measures the watching process only after a cold run, the fp32 baseline and
the learned coder (about an hour at 7,000 pages). This reuses a work folder that
``bench.edit_profile`` made (corpus, caches, store with decisions): one plain ``qcode run``
(whose outputs the watching process then reuses, as in ``make bench``), then
``bench.run.bench_watch``'s two edits, from the file written to "Coded again" (polling
included).

    python -m bench.watch_edits --work /tmp/ep7000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.run import CODEBOOK, ROOT, bench_watch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench.edit_profile folder")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 1000)
    parser.add_argument("--out", type=Path, help="results JSON (default: print only)")
    args = parser.parse_args()
    work = args.work
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}
    common = {
        "transcripts": work / "corpus",
        "cache": work / "cache",
        "store": work / "project.sqlite",
    }
    command = [sys.executable, "-m", "pipeline.cli", "run", str(common["transcripts"])]
    command += ["--codebook", str(CODEBOOK), "--out", str(work / "out")]
    command += ["--cache-dir", str(common["cache"]), "--store", str(common["store"])]
    clock = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    plain_s = time.perf_counter() - clock
    files = sorted(common["transcripts"].glob("bench_*"))
    targets = [files[len(files) // 8], files[(7 * len(files)) // 8]]
    result = {
        "command": f"python -m bench.watch_edits --work {work}",
        "plain_run_s": round(plain_s, 3),
        "watch": bench_watch(work, env, common, work / "out", targets, args.seed),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
