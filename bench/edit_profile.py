"""Edits in one watching process, timed stage by stage: what an edit still costs at a size.

Why: ``bench.run`` times edits under ``qcode run --watch`` end to end (polling included) after
a cold run of the whole corpus (27 minutes at 7,000 pages here). This runs the same coding
call a watching process makes (``pipeline.cli._code_and_report``) in one process: a first
run, the models and results loaded as ``--watch`` loads them, then ``--edits`` edits of
different transcripts, each timed, and with ``--profile`` (needs ``pip install
pyinstrument``, not a qcode dependency) a profile of each edit written beside the results.

    python -m bench.edit_profile --pages 7000 --work /tmp/edits --cache-from /tmp/b/w9/p7000/cache

``--cache-from`` copies a warm cache folder of the same corpus (a ``bench.run`` work folder's
``p<pages>/cache``) so the first run does not encode everything again. The corpus is the
speed benchmark's (``bench.corpus``, same seed), so such a cache fits it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=700)
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder")
    parser.add_argument("--cache-from", type=Path, help="a warm cache folder to copy first")
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument(
        "--decisions",
        type=int,
        default=1000,
        help="units a simulated reviewer decides after the first run (as bench.run does)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="write a profile of each edit")
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/)")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(args.work / "prefect"))

    from bench.corpus import edit_transcript, write_corpus
    from bench.run import decide_units
    from pipeline.cli import _code_and_report, _ready_for_edits
    from pipeline.settings import Settings
    from pipeline.watch import collector_paused

    args.work.mkdir(parents=True, exist_ok=True)
    corpus, cache = args.work / "corpus", args.work / "cache"
    if not corpus.exists():
        write_corpus(corpus, args.pages, args.seed)
    if args.cache_from is not None and not cache.exists():
        shutil.copytree(args.cache_from, cache)
    settings = Settings.from_overrides(cache_dir=cache, store=str(args.work / "project.sqlite"))
    codebook = ROOT / "codebooks" / "west_partnership.yaml"
    out = args.work / "out"

    clock = time.perf_counter()
    _code_and_report(corpus, codebook, out, settings)
    first_s = time.perf_counter() - clock
    first_peak_mb = _peak_rss_mb()
    decided = decide_units(settings.store, args.decisions, args.seed) if args.decisions else {}
    # What `qcode run --watch` does before it waits for the first change.
    _ready_for_edits(corpus, out, settings)
    gc.collect()
    gc.freeze()

    files = sorted(corpus.glob("bench_*"))
    targets = [files[(k + 1) * len(files) // (args.edits + 1)] for k in range(args.edits)]
    edits = []
    for k, target in enumerate(targets):
        edit_transcript(target, seed=args.seed + 100 + k + int(time.time()) % 10_000)
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.005)
            profiler.start()
        clock = time.perf_counter()
        with collector_paused():  # as `qcode run --watch` codes an edit
            _code_and_report(corpus, codebook, out, settings)
        wall = time.perf_counter() - clock
        if profiler is not None:
            profiler.stop()
            text = profiler.output_text(unicode=False, color=False)
            (args.work / f"edit{k}.txt").write_text(text, encoding="utf-8")
        gc.collect()
        edits.append(
            {"edited": target.name, "wall_s": round(wall, 3), "peak_rss_mb": _peak_rss_mb()}
        )
        print(f"edit {k}: {target.name}: {wall:.2f} s", flush=True)
    from pipeline.store import Store

    with Store(settings.store) as store:
        decisions_in_store = store.decision_count()
    result = {
        "command": "python -m bench.edit_profile --pages "
        f"{args.pages} --edits {args.edits} --decisions {args.decisions}"
        + (" --profile" if args.profile else ""),
        "pages": args.pages,
        "transcripts": len(files),
        "first_run_s": round(first_s, 3),
        "first_run_peak_rss_mb": first_peak_mb,
        "decided": decided,
        "decisions_in_store": decisions_in_store,
        "edits": edits,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    target_file = args.out or ROOT / "bench" / "results" / f"edit-profile-{args.pages}.json"
    target_file.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))


def _peak_rss_mb() -> int:
    """This process's peak resident memory so far, in MB (Linux reports KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


if __name__ == "__main__":
    main()
