"""Benchmark: reviewers saving decisions concurrently on a PostgreSQL store while a run writes.

Starts a throwaway PostgreSQL cluster (unix socket in a temporary folder: loopback only, nothing
else can reach it), records the bundled sample as a project (the real stages), then:

1. ``baseline``: one reviewer saving alone, nothing else running, for a quarter of the time;
2. ``load``: ``--reviewers`` (10) processes each saving decisions (``Store.decide`` with the unit
   version they read, blind as in double coding, 0.05-0.3 s between saves) while another process
   records a new run of the whole sample again and again.

Then every save a reviewer was told succeeded is looked up in the store: lost (acknowledged but
absent), duplicated (stored twice) and unacknowledged rows are counted, and the p50/p95/max save
latency is reported, with the load's p95 as a ratio of the baseline's. Targets (issue 15):
0 lost, 0 duplicated, p95 <= 200 ms. Latency is the store's (``decide``), not the web page's.

    python -m bench.team_load                   # 1 minute of load (default)
    python -m bench.team_load --minutes 10      # the issue's full form
    python -m bench.team_load --connection pooled   # a store per save, connections pooled
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def build_sample_project(path: Path) -> None:
    """The bundled sample coded by the real stages and recorded in an SQLite store."""
    from bench.corpus import record_real_run
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.ingest import read_transcripts
    from pipeline.segment import load_sentencizer

    transcripts, problems = read_transcripts(ROOT / "transcripts_sample")
    codebook = load_codebook(ROOT / "codebooks" / "west_partnership.yaml")
    cache = EmbeddingCache(path.parent / "embeddings.sqlite")
    try:
        record_real_run(
            path, transcripts, problems, load_sentencizer(), load_encoder(), codebook, cache
        )
    finally:
        cache.close()


def reviewer(
    url: str, name: str, seconds: float, seed: int, queue, connection: str = "held"
) -> None:
    """Save decisions until time is up; report (memo, decision id, latency) of each success.

    ``connection``: ``held``, one store for the whole time (latency: ``decide``); ``per-save``,
    a store opened for each save, as the review page opens one per request, or ``pooled``, the
    same with the connection borrowed from the process's pool (latency: open the store, read the
    unit's version, ``decide``, close)."""
    from pipeline.store import NewDecision, StaleUnitError, Store

    rng = random.Random(seed)
    saved, stale = [], 0
    held = Store(url, migrate=False)
    suggestions = held.suggestions()
    pairs = list(zip(suggestions["unit_id"], suggestions["code_id"], strict=True))
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        unit, code = rng.choice(pairs)
        memo = f"{name}:{n}"
        n += 1
        start = time.perf_counter()
        store = held if connection == "held" else Store(url, False, connection == "pooled")
        try:
            if connection == "held":
                version = store.unit_version(unit, name)
                start = time.perf_counter()
            else:
                version = store.unit_version(unit, name)
            ids = store.decide(
                name,
                [NewDecision(unit, code, rng.choice(["accept", "reject"]), memo)],
                expected_versions={unit: version},
                version_reviewer=name,
            )
        except StaleUnitError:
            stale += 1
            continue
        finally:
            if store is not held:
                store.close()
        saved.append((memo, ids[0], time.perf_counter() - start))
        time.sleep(rng.uniform(0.05, 0.3))
    held.close()
    queue.put((name, saved, stale))


def run_writer(url: str, seconds: float, queue) -> None:
    """Record the latest run again under new run ids until time is up (a run writing)."""
    from pipeline.store import Store

    with Store(url, migrate=False) as store:
        run_id = store.latest_run_id()
        manifest = store.manifest(run_id)
        units = store.units(run_id)
        suggestions = store.suggestions(run_id)
        codebook = store.codebook(run_id)
    transcripts = _transcripts(url)
    deadline = time.monotonic() + seconds
    runs, durations = 0, []
    while time.monotonic() < deadline:
        start = time.perf_counter()
        with Store(url, migrate=False) as store:
            again = {**manifest, "run_id": f"{manifest['run_id']}-load{runs}"}
            store.record_run(again, transcripts, units, suggestions, codebook)
        durations.append(time.perf_counter() - start)
        runs += 1
    queue.put(("run-writer", runs, durations))


def _transcripts(url: str):
    from pipeline.ingest import read_transcripts

    return read_transcripts(ROOT / "transcripts_sample")[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def phase(
    url: str, names: list[str], seconds: float, with_run: bool, connection: str = "held"
) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=reviewer, args=(url, n, seconds, i, queue, connection))
        for i, n in enumerate(names)
    ]
    if with_run:
        processes.append(context.Process(target=run_writer, args=(url, seconds, queue)))
    for p in processes:
        p.start()
    results = [queue.get(timeout=seconds + 600) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    saves, stale, runs, run_seconds = {}, 0, 0, []
    for result in results:
        if result[0] == "run-writer":
            runs, run_seconds = result[1], result[2]
        else:
            saves[result[0]] = result[1]
            stale += result[2]
    latencies = [s[2] for rows in saves.values() for s in rows]
    return {
        "reviewers": len(names),
        "seconds": seconds,
        "saves": len(latencies),
        "stale_refusals": stale,
        "runs_recorded": runs,
        "run_seconds_mean": sum(run_seconds) / len(run_seconds) if run_seconds else None,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "max_ms": 1000 * max(latencies) if latencies else None,
        "acknowledged": {n: [(m, i) for m, i, _ in rows] for n, rows in saves.items()},
    }


def verify(url: str, acknowledged: dict[str, list[tuple[str, int]]]) -> dict:
    """Every acknowledged save stored exactly once, under its id; nothing else stored."""
    from pipeline.store import Store

    with Store(url, migrate=False) as store:
        rows = store.db.execute("SELECT reviewer, memo, decision_id FROM decisions").fetchall()
    stored: dict[tuple[str, str], list[int]] = {}
    for who, memo, decision_id in rows:
        stored.setdefault((who, memo), []).append(int(decision_id))
    acked = {(n, m): i for n, pairs in acknowledged.items() for m, i in pairs}
    lost = [k for k, i in acked.items() if stored.get(k) != [i]]
    duplicated = [k for k, ids in stored.items() if len(ids) > 1]
    unacknowledged = [k for k in stored if k not in acked]
    return {
        "acknowledged": len(acked),
        "stored": len(rows),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "unacknowledged": len(unacknowledged),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--reviewers", type=int, default=10)
    parser.add_argument(
        "--connection",
        choices=["held", "per-save", "pooled"],
        default="held",
        help="held: one store per reviewer; per-save / pooled: a store per save, as the page "
        "opens one per request, without or with the connection pool",
    )
    parser.add_argument("--name", default=None, help="Result file name (bench/results/NAME.json)")
    args = parser.parse_args()

    from pipeline.environment import configure_environment
    from pipeline.pgcluster import Cluster
    from pipeline.store import Store
    from pipeline.store_copy import copy_store

    configure_environment(ROOT)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as folder, Cluster() as cluster:
        started = time.perf_counter()
        sample = Path(folder) / "project.sqlite"
        build_sample_project(sample)
        url = cluster.create_database("loadbench")
        with Store(sample) as source, Store(url) as destination:
            copy_store(source, destination)
        setup_seconds = time.perf_counter() - started
        way = args.connection
        baseline = phase(url, ["solo"], max(10.0, seconds / 4), False, way)
        load = phase(url, [f"reviewer{i + 1}" for i in range(args.reviewers)], seconds, True, way)
        checked = verify(url, {**baseline.pop("acknowledged"), **load.pop("acknowledged")})
    result = {
        "command": f"python -m bench.team_load --minutes {args.minutes:g}"
        + (f" --reviewers {args.reviewers}" if args.reviewers != 10 else "")
        + (f" --connection {args.connection}" if args.connection != "held" else ""),
        "connection": args.connection,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "setup_seconds": round(setup_seconds, 1),
        "baseline": baseline,
        "load": load,
        "p95_ratio_to_baseline": load["p95_ms"] / baseline["p95_ms"],
        "verified": checked,
        "targets": {
            "lost": checked["lost"] == 0,
            "duplicated": checked["duplicated"] == 0,
            "p95_le_200ms": load["p95_ms"] <= 200,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    way = "" if args.connection == "held" else f"-{args.connection}"
    name = args.name or f"team-load-{args.minutes:g}min{way}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
