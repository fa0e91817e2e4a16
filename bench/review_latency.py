"""Benchmark: save-and-next on the review page with 50,000 decisions in the project store.

One run builds a project from the bundled sample interviews (copied ``--copies`` times under new
interview ids, so the store holds a large project; the real spaCy pipeline, the bundled encoder
and the real assign stage code it) and two copies of its store:

* ``baseline``: 200 decisions;
* ``large``: ``--decisions`` decisions (default 50,000) by four reviewers: whole units reviewed
  (every suggested code accepted or rejected, sometimes a code added or a memo), the way the page
  and sheets write them.

Against each store it serves the real app in-process (FastAPI's TestClient: every middleware,
the CSRF check, the store) and times *save and next* as a reviewer meets it: the POST of a
unit's form (one code accepted, the rest left as they are) and the GET of the next unit it
redirects to, walking the default queue. The first ``--warmup`` saves are not counted (the
app reads the run once). It reports p50 and p95 per store and the ratio large / baseline, both
measured in the same run: the machine is shared, so only the ratio and the target compare
across runs. Beside wall time it reports the process's CPU time per save (the app runs in a
thread of the benchmark's process), which a crowded machine inflates far less, and the load
average.

    python -m bench.review_latency                   # 50,000 decisions, 100 timed saves
    python -m bench.review_latency --quick           # 5,000 decisions, 30 timed saves (CI)

Writes ``bench/results/review-latency[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "transcripts_sample"
CODEBOOK = ROOT / "codebooks" / "west_partnership.yaml"
RESULTS = ROOT / "bench" / "results"
TARGET_P95_S = 0.150
REVIEWERS = ("ann", "bob", "cy", "dee")


def build_project(path: Path, copies: int, cache_dir: Path) -> dict:
    """A project store with one real run over the sample interviews copied ``copies`` times."""
    from bench.corpus import record_real_run
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.ingest import read_transcripts
    from pipeline.segment import load_sentencizer
    from pipeline.store import Store

    started = time.perf_counter()
    sample, problems = read_transcripts(SAMPLE)
    transcripts = [
        replace(t, transcript_id=f"{t.transcript_id}-{n:02d}") if n else t
        for n in range(copies)
        for t in sample
    ]
    codebook = load_codebook(CODEBOOK)
    encoder = load_encoder()
    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")  # copies share their texts' vectors
    record_real_run(path, transcripts, problems, load_sentencizer(), encoder, codebook, cache)
    cache.close()
    with Store(path) as store:
        units, suggestions = store.units(), store.suggestions()
    return {
        "interviews": len(transcripts),
        "codable_units": int(units["codable"].sum()),
        "suggestions": len(suggestions),
        "build_s": round(time.perf_counter() - started, 1),
    }


def add_decisions(path: Path, total: int, seed: int) -> int:
    """``total`` decisions (about) by four reviewers, whole units at a time, in batches."""
    from pipeline.store import NewDecision, Store

    rng = random.Random(seed)
    with Store(path) as store:
        units = store.units()
        suggestions = store.suggestions()
        codes = store.codebook().ids
        by_unit: dict[str, list[str]] = {}
        for unit_id, code_id in zip(suggestions["unit_id"], suggestions["code_id"], strict=True):
            by_unit.setdefault(unit_id, []).append(code_id)
        codable = units.loc[units["codable"], "unit_id"].tolist()
        # The queue's first units stay undecided: the timed walk reviews them.
        pool = codable[len(codable) // 10 :]
        written = 0
        while written < total:
            reviewer = rng.choice(REVIEWERS)
            batch: list[NewDecision] = []
            while len(batch) < 500 and written + len(batch) < total:
                unit_id = rng.choice(pool)
                memo = "close call" if rng.random() < 0.1 else ""
                for code in by_unit.get(unit_id, []):
                    action = "accept" if rng.random() < 0.5 else "reject"
                    batch.append(NewDecision(unit_id, code, action, memo))
                if rng.random() < 0.2 or not by_unit.get(unit_id):
                    batch.append(NewDecision(unit_id, rng.choice(codes), "add", memo))
            batch = batch[: total - written]
            store.decide(reviewer, batch, source="web" if rng.random() < 0.7 else "sheet")
            written += len(batch)
    return written


def time_save_and_next(path: Path, saves: int, warmup: int) -> dict:
    """Walk the default queue saving each unit (first code accepted): seconds per save."""
    import re

    from fastapi.testclient import TestClient

    from pipeline.review import create_app

    client = TestClient(create_app(path), base_url="http://127.0.0.1")
    form = client.get("/reviewer").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    client.post("/reviewer", data={"csrf": csrf, "name": "Bench", "next": "/"})
    queue = client.get("/").text
    url = re.search(r'id="start" href="([^"]+)"', queue).group(1).replace("&amp;", "&")
    page = client.get(url).text
    times: list[float] = []
    cpus: list[float] = []  # CPU seconds of this process (the app runs in a thread of it)
    for i in range(warmup + saves):
        fields = _form_fields(page)
        unit_id = re.search(r'data-unit="(\w+)"', page).group(1)
        choice = next((k for k, _ in fields if k.startswith("choice:")), None)
        data: dict[str, list[str]] = {}
        for key, value in fields:
            if key.startswith("choice:"):
                continue
            data.setdefault(key, []).append(value)
        if choice:
            data[choice] = ["accept"]
        started, cpu = time.perf_counter(), time.process_time()
        response = client.post(f"/unit/{unit_id}", data=data)  # follows the redirect: next unit
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if response.status_code != 200 or 'id="unit-form"' not in response.text:
            raise SystemExit(f"save {i} failed: HTTP {response.status_code}")
        if i >= warmup:
            times.append(elapsed)
            cpus.append(cpu)
        page = response.text
    return {
        "saves": len(times),
        "p50_s": round(float(np.percentile(times, 50)), 4),
        "p95_s": round(float(np.percentile(times, 95)), 4),
        "max_s": round(max(times), 4),
        "cpu_p50_s": round(float(np.percentile(cpus, 50)), 4),
        "cpu_p95_s": round(float(np.percentile(cpus, 95)), 4),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def _form_fields(html: str) -> list[tuple[str, str]]:
    """The unit form's fields as a browser sends them (checked radios and boxes only)."""
    from html.parser import HTMLParser

    class Fields(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.fields = False, []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form":
                self.inside = a.get("id") == "unit-form"
            elif self.inside and tag == "input" and a.get("name"):
                if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                    return
                self.fields.append((a["name"], a.get("value") or ""))

        def handle_endtag(self, tag):
            if tag == "form":
                self.inside = False

    parser = Fields()
    parser.feed(html)
    return parser.fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--baseline-decisions", type=int, default=200)
    parser.add_argument("--copies", type=int, default=6, help="copies of the sample interviews")
    parser.add_argument("--saves", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5,000 decisions, 30 saves")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    if args.quick:
        args.decisions, args.saves, args.copies = 5_000, 30, 2

    from pipeline.environment import configure_environment

    configure_environment(ROOT)
    with tempfile.TemporaryDirectory(prefix="qcode-review-bench-") as folder:
        work = Path(folder)
        template = work / "template.sqlite"
        project = build_project(template, args.copies, ROOT / ".cache")
        results = {}
        for name, count in (("baseline", args.baseline_decisions), ("large", args.decisions)):
            path = work / f"{name}.sqlite"
            shutil.copy(template, path)
            written = add_decisions(path, count, args.seed)
            timing = time_save_and_next(path, args.saves, args.warmup)
            results[name] = {"decisions": written, **timing}
            print(f"{name}: {written} decisions: {timing}")
    ratio = results["large"]["p95_s"] / results["baseline"]["p95_s"]
    cpu_ratio = results["large"]["cpu_p95_s"] / results["baseline"]["cpu_p95_s"]
    report = {
        "what": "save and next on the review page (POST a unit form, GET the next unit), "
        "in-process, default queue order",
        "command": "python -m bench.review_latency" + (" --quick" if args.quick else ""),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "project": project,
        **results,
        "p95_ratio_large_vs_baseline": round(ratio, 2),
        "cpu_p95_ratio_large_vs_baseline": round(cpu_ratio, 2),
        "target_p95_s": TARGET_P95_S,
        "target_met": results["large"]["p95_s"] <= TARGET_P95_S,
        "target_met_in_cpu_time": results["large"]["cpu_p95_s"] <= TARGET_P95_S,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"review-latency{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"p95 {results['large']['p95_s'] * 1000:.0f} ms at {results['large']['decisions']} "
        f"decisions, {results['baseline']['p95_s'] * 1000:.0f} ms at "
        f"{results['baseline']['decisions']} (ratio {ratio:.2f}); CPU p95 "
        f"{results['large']['cpu_p95_s'] * 1000:.0f} ms (ratio {cpu_ratio:.2f}); target "
        f"{TARGET_P95_S * 1000:.0f} ms: {'met' if report['target_met'] else 'MISSED'} -> {out}"
    )


if __name__ == "__main__":
    main()
