"""Benchmark: the coding flow on a generated corpus, against bare fp32 encoding of its units.

For each corpus size (pages of ~500 words) it measures, in one run, each step in its own fresh
process (so peak memory is that process's own):

1. ``cold``: the full flow with an empty embedding cache, sentence cache, store and output
   folder: wall time from process start to exit (Python, imports, the temporary Prefect
   server, every stage), each stage's time (Prefect's task runs), units per second, peak RSS
   of the working process (and of its children: the Prefect server, Dask workers). Prefect's
   own database is created (and timed) just before, as on a project's first use;
2. ``baseline``: bare ``SentenceTransformer.encode`` in torch fp32 of the same unit texts
   (the unique texts the cold run embedded), same batch size, model load and a warm-up batch
   not counted; the cold run's total time is divided by it. It also compares the run's vectors
   (bf16 by default) with these fp32 ones: cosine and nearest code prototype;
3. ``warm``: the same command again, nothing changed;
4. ``warm_full``: a new output folder with the same store and caches, so every stage runs
   (nothing to encode or segment);
5. ``learned``: a simulated reviewer decides 1,000 coded units (accepts the top suggestion,
   rejects the rest; timing input, not a quality figure), ``retrain`` learns from them (timed),
   and a run with that coder in a new output folder is compared with ``warm_full``;
6. ``edit``: one transcript edited (two answers rewritten, one exchange added), run again;
7. with ``--server`` (default): a long-running Prefect server (``pipeline.server``, what
   ``qcode server`` starts) and ``PREFECT_API_URL``: ``edit_server`` (another transcript
   edited) and ``warm_server`` (nothing changed) skip the temporary server's start;
8. with ``--watch`` (default): one ``qcode run --watch`` process, two more transcripts
   edited one after the other, each timed from the file's write to "Coded again".

It writes ``bench/results/<name>.json`` and prints a table. Speed is only ever judged as ratios
against the baseline measured in the same run: the machine is shared and timings are noisy.

    python -m bench.run --pages 700 7000       # the issue's sizes
    python -m bench.run --quick                # a 15-page smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODEBOOK = ROOT / "codebooks" / "west_partnership.yaml"
RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "cold_vs_fp32_encode": 0.5,
    "warm_s": 10.0,
    "edit_s": 5.0,
    "privacy_share_of_cold": 0.15,
    "peak_rss_mb": 2000,
    "scale_7000_vs_700": 10.0,
}
DECISIONS = 1000  # simulated reviewer decisions the learned coder is trained on


# -- steps, each run in its own process -------------------------------------------------------


def step_flow(args: argparse.Namespace) -> dict:
    """What ``qcode run`` does: the flow with these settings."""
    from pipeline.environment import configure_environment

    configure_environment()
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    settings = Settings(
        cache_dir=args.cache,
        store=args.store,
        precision=args.precision,
        task_runner=args.task_runner,
        dask_address=args.dask_address,
        **({"privacy": args.privacy} if args.privacy else {}),
        **({"classifier": args.classifier} if args.classifier else {}),
    )
    run_dir = code_transcripts(args.transcripts, CODEBOOK, args.out, settings)
    return {"run_dir": str(run_dir), "flow_returned_at": time.time()}


def step_inspect(args: argparse.Namespace) -> dict:
    """Seconds per task of the newest code-transcripts flow run (from Prefect's own records)."""
    from pipeline.environment import configure_environment

    configure_environment()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["code-transcripts"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        if not runs:
            return {}
        run = runs[0]
        ids = [run.id]
        subflows = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["embed-and-assign"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        if subflows and subflows[0].start_time and subflows[0].start_time >= run.start_time:
            ids.append(subflows[0].id)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": ids}),  # type: ignore[arg-type]
        )
    stages: dict[str, float] = {}
    for t in tasks:
        name = t.name.rsplit("-", 1)[0]
        stages[name] = stages.get(name, 0.0) + float(t.total_run_time.total_seconds())
    return {
        "flow_s": float(run.total_run_time.total_seconds()),
        "flow_started_at": run.start_time.timestamp() if run.start_time else None,
        "tasks_s": {k: round(v, 3) for k, v in stages.items()},
    }


def step_baseline(args: argparse.Namespace) -> dict:
    """Bare torch-fp32 ``SentenceTransformer.encode`` of the cold run's unit texts."""
    from pipeline.environment import configure_environment

    configure_environment()
    import numpy as np
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    from pipeline.assign import build_prototypes, embedded_mask, score_matrix
    from pipeline.codebook import load_codebook
    from pipeline.embed import EmbeddingCache, load_encoder
    from pipeline.settings import Settings

    settings = Settings()
    units = pd.read_parquet(Path(args.run_dir) / "units.parquet")
    texts = list(dict.fromkeys(units.loc[embedded_mask(units, settings), "text"]))
    clock = time.perf_counter()
    encoder = load_encoder(settings.model, precision="fp32")
    model: SentenceTransformer = encoder.model
    load_s = time.perf_counter() - clock
    model.encode(texts[: settings.batch_size], batch_size=settings.batch_size)  # warm-up
    clock = time.perf_counter()
    fp32 = model.encode(texts, batch_size=settings.batch_size, convert_to_numpy=True)
    encode_s = time.perf_counter() - clock
    fp32 = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)

    # The run's own vectors (its precision) from its cache, against these fp32 ones.
    run = load_encoder(settings.model, precision=args.precision, lazy=True)
    cache = EmbeddingCache(Path(args.cache) / "embeddings.sqlite")
    from pipeline.embed import cache_namespace

    found = cache.lookup(cache_namespace(run), texts)
    have = [i for i, t in enumerate(texts) if t in found]
    ran = np.vstack([found[texts[i]] for i in have])
    cosine = (ran * fp32[have]).sum(axis=1)
    codebook = load_codebook(CODEBOOK)
    ref = build_prototypes(codebook, encoder, None, settings.batch_size)
    mine = build_prototypes(codebook, run, cache, settings.batch_size)
    same_top = score_matrix(fp32[have], ref, settings.example_weight).argmax(axis=1) == (
        score_matrix(ran, mine, settings.example_weight).argmax(axis=1)
    )
    cache.close()
    return {
        "texts": len(texts),
        "batch_size": settings.batch_size,
        "torch_threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 3),
        "encode_s": round(encode_s, 3),
        "texts_per_s": round(len(texts) / encode_s, 1),
        "vs_fp32": {
            "precision": args.precision,
            "compared": len(have),
            "cosine_min": round(float(cosine.min()), 5),
            "cosine_mean": round(float(cosine.mean()), 6),
            "same_nearest_prototype": round(float(same_top.mean()), 4),
        },
    }


def step_init(args: argparse.Namespace) -> dict:
    """Create Prefect's own database in a new Prefect home (once per project, on first use)."""
    from pipeline.environment import configure_environment

    configure_environment()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()
    return {}


def step_decide(args: argparse.Namespace) -> dict:
    """A simulated reviewer decides ``DECISIONS`` coded units of the latest run."""
    return decide_units(args.store, DECISIONS, args.seed)


def decide_units(store_path: Path | str, n: int, seed: int) -> dict:
    """A simulated reviewer decides ``n`` coded units of the latest run (accepts the top
    suggestion, rejects the others): timing input, not a quality figure."""
    import random

    from pipeline.store import NewDecision, Store

    with Store(store_path) as store:
        suggestions = store.suggestions()
        units = sorted(suggestions["unit_id"].unique())
        chosen = set(random.Random(seed).sample(units, min(n, len(units))))
        picked = suggestions[suggestions["unit_id"].isin(chosen)]
        picked = picked.sort_values(["unit_id", "score"], ascending=[True, False])
        first = ~picked["unit_id"].duplicated()
        decisions = [
            NewDecision(u, c, "accept" if top else "reject")
            for u, c, top in zip(picked["unit_id"], picked["code_id"], first, strict=True)
        ]
        store.decide("bench reviewer", decisions, source="bench")
    return {"units": len(chosen), "decisions": len(decisions)}


def step_retrain(args: argparse.Namespace) -> dict:
    """What ``qcode retrain`` does: learn from the store's decisions (a Prefect flow)."""
    from pipeline.environment import configure_environment

    configure_environment()
    from flows.training import retrain_from_decisions
    from pipeline.settings import Settings

    clock = time.perf_counter()
    folder = retrain_from_decisions(
        Path(args.store), Path(args.classifier), Settings(cache_dir=args.cache)
    )
    return {"coder": str(folder), "flow_s": round(time.perf_counter() - clock, 3)}


STEPS = {
    "decide": step_decide,
    "retrain": step_retrain,
    "flow": step_flow,
    "inspect": step_inspect,
    "baseline": step_baseline,
    "init": step_init,
}


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (Linux's /proc/stat "cpu" line), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            return [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the CPUs' time the hypervisor gave to other machines between two
    ``cpu_times`` readings (the 8th counter, "steal"). Why: on a shared virtual machine a step
    can run 20-40% slower when neighbours are busy; this says when a figure is such a one."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return round((after[7] - before[7]) / total, 3) if total > 0 else None


def run_step(name: str, work: Path, env: dict[str, str], **options: object) -> dict:
    """Run one step in a fresh process; wall time from spawn to exit, peak RSS, the CPUs'
    steal share meanwhile."""
    result = work / f".step-{name}.json"
    command = [sys.executable, "-m", "bench.run", "--step", name, "--result", str(result)]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    started = time.time()
    load = os.getloadavg()[0]
    cpu = cpu_times()
    clock = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - clock
    steal = steal_share(cpu, cpu_times())
    log = work / f"{name}.log"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"bench step {name} failed (exit {done.returncode}); see {log}")
    data = json.loads(result.read_text())
    data["wall_s"] = round(wall, 3)
    data["started_at"] = started
    data["load_average_before"] = round(load, 2)
    data["cpu_steal_share"] = steal
    return data


def _step_main(args: argparse.Namespace) -> None:
    data = STEPS[args.step](args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    data["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    data["children_peak_rss_mb"] = round(children.ru_maxrss / 1024, 1)
    Path(args.result).write_text(json.dumps(data))


# -- one corpus size --------------------------------------------------------------------------


def measure_run(name: str, folder: Path, env: dict, **options: object) -> dict:
    out = Path(str(options["out"]))
    before = {p.name for p in out.iterdir()} if out.is_dir() else set()
    run = run_step("flow", folder, env, **options)
    manifest = json.loads((Path(run["run_dir"]) / "manifest.json").read_text())
    info = run_step("inspect", folder, env)
    startup = None
    if info.get("flow_started_at"):
        startup = round(info["flow_started_at"] - run["started_at"], 3)
    return {
        "wall_s": run["wall_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "children_peak_rss_mb": run["children_peak_rss_mb"],
        "run_dir": run["run_dir"],
        "reused_previous_run": Path(run["run_dir"]).name in before,
        "load_average_before": run["load_average_before"],
        "cpu_steal_share": run["cpu_steal_share"],
        "startup_s": startup,
        "flow_s": info.get("flow_s"),
        "tasks_s": info.get("tasks_s", {}),
        "manifest_timings_s": manifest.get("timings_s", {}),
        "counts": manifest.get("counts", {}),
        "execution": manifest.get("execution", {}),
    }


def _recorded(measure: Callable[[], dict]) -> dict:
    """A measurement's results, or what went wrong: one failed extra does not lose a long
    benchmark's other figures."""
    try:
        return measure()
    except (Exception, SystemExit) as error:
        print(f"  failed: {error}", flush=True)
        return {"error": str(error)}


def bench_learned(folder: Path, env: dict, common: dict, args: argparse.Namespace) -> dict:
    """Simulated decisions, ``retrain`` on them, and a run with the learned coder."""
    coder = folder / "coder"
    decided = run_step("decide", folder, env, store=common["store"], seed=args.seed)
    retrain = run_step(
        "retrain", folder, env, store=common["store"], cache=common["cache"], classifier=coder
    )
    run = measure_run(
        "learned", folder, env, out=folder / "out-learned", classifier=coder, **common
    )
    return {
        "decisions": decided["decisions"],
        "units_decided": decided["units"],
        "retrain": retrain,
        "run": run,
    }


def bench_server(folder: Path, env: dict, common: dict, out: Path, target: Path, seed: int) -> dict:
    """With a long-running Prefect server (what ``qcode server`` starts) instead of a
    temporary one per run: one more transcript edited, then nothing changed."""
    from bench.corpus import edit_transcript
    from pipeline.server import api_url, free_port, start_server, stop_server

    port = free_port()
    clock = time.perf_counter()
    server = start_server(folder, port, log=folder / "server.log", base_env=env)
    result: dict = {"start_s": round(time.perf_counter() - clock, 3)}
    try:
        served = {**env, "PREFECT_API_URL": api_url(port)}
        edit_transcript(target, seed=seed)
        print(f"  server: edited {target.name}; re-run ...", flush=True)
        result["edit"] = measure_run("edit_server", folder, served, out=out, **common)
        result["edit"]["edited"] = target.name
        result["warm"] = measure_run("warm_server", folder, served, out=out, **common)
    finally:
        stop_server(server)
    return result


def bench_watch(
    folder: Path, env: dict, common: dict, out: Path, targets: list[Path], seed: int
) -> dict:
    """``qcode run --watch``: one process that stays up with its models loaded; each edit is
    timed from the moment the file is written to the line saying it was coded again (the
    0.25 s polling and 0.25 s settling included), as a person correcting transcripts waits."""
    from bench.corpus import edit_transcript

    command = [sys.executable, "-m", "pipeline.cli", "run", str(common["transcripts"])]
    command += ["--codebook", str(CODEBOOK), "--out", str(out), "--watch"]
    command += ["--cache-dir", str(common["cache"]), "--store", str(common["store"])]
    for option in ("precision", "task_runner", "dask_address", "privacy"):
        if common.get(option) is not None:
            command += [f"--{option.replace('_', '-')}", str(common[option])]
    log = (folder / "watch.log").open("w", encoding="utf-8")
    clock = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=log, text=True,
    )  # fmt: skip
    lines = iter(process.stdout)

    def until(marker: str) -> str:
        for line in lines:
            log.write(line)
            if marker in line:
                return line
        raise SystemExit(f"qcode run --watch stopped before {marker!r}; see {log.name}")

    result: dict = {"edits": []}
    try:
        until("Watching for changes")
        result["ready_s"] = round(time.perf_counter() - clock, 3)
        for i, target in enumerate(targets):
            edit_transcript(target, seed=seed + i)
            cpu = cpu_times()
            clock = time.perf_counter()
            said = until("Coded again in")
            wall = time.perf_counter() - clock
            steal = steal_share(cpu, cpu_times())
            until("Watching for changes")
            reported = float(said.split("Coded again in", 1)[1].split()[0])
            result["edits"].append(
                {
                    "edited": target.name,
                    "wall_s": round(wall, 3),
                    "run_s": reported,
                    "cpu_steal_share": steal,
                }
            )
            print(f"  watch: edited {target.name}: {wall:.1f} s", flush=True)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    result["edit_s"] = result["edits"][-1]["wall_s"] if result["edits"] else None
    return result


def _coding_s(run: dict) -> float:
    """Seconds of a run's coding stages: prototypes, and embedding and assigning units."""
    tasks = run["tasks_s"]
    return tasks.get("prototypes", 0.0) + tasks.get("embed and assign", 0.0)


def bench_size(
    pages: int,
    args: argparse.Namespace,
    work: Path,
    keep: Callable[[dict], None] = lambda part: None,
) -> dict:
    """Every measurement at one size. ``keep`` gets the figures so far after each step: a
    7,000-page run takes over an hour, and a machine that stops part-way keeps what it has."""
    from bench.corpus import edit_transcript, write_corpus

    folder = work / f"p{pages}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    corpus = folder / "corpus"
    print(f"[{pages} pages] writing the corpus ...", flush=True)
    stats = write_corpus(corpus, pages, args.seed)
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect")}
    common = {
        "transcripts": corpus,
        "cache": folder / "cache",
        "store": folder / "project.sqlite",
        "precision": args.precision,
        "task_runner": args.task_runner,
        "dask_address": args.dask_address,
        "privacy": args.privacy,
    }
    out = folder / "out"
    result: dict = {
        "pages": pages,
        "corpus": {k: v for k, v in vars(stats).items() if k != "files"},
    }

    # Prefect creates its own database on a project's first use (once, not per run): done
    # here, and timed, before the cold run.
    result["prefect_first_use_s"] = run_step("init", folder, env)["wall_s"]
    print(f"[{pages} pages] cold run ...", flush=True)
    cold = measure_run("cold", folder, env, out=out, **common)
    result["cold"] = cold
    keep(result)
    print(f"[{pages} pages] cold: {cold['wall_s']:.1f} s; baseline fp32 encode ...", flush=True)
    result["baseline"] = run_step(
        "baseline",
        folder,
        env,
        run_dir=cold["run_dir"],
        cache=common["cache"],
        precision=args.precision,
    )
    keep(result)
    print(f"[{pages} pages] baseline: {result['baseline']['encode_s']:.1f} s; warm ...", flush=True)
    result["warm"] = measure_run("warm", folder, env, out=out, **common)
    result["warm_full"] = measure_run("warm_full", folder, env, out=folder / "out-full", **common)
    keep(result)

    # The learned coder: decisions, retraining, then a run with it (all stages, nothing to
    # encode: compare with warm_full, the same run zero-shot).
    if args.learned:
        print(f"[{pages} pages] learned coder: decisions, retrain, run ...", flush=True)
        result["learned"] = _recorded(lambda: bench_learned(folder, env, common, args))
        keep(result)
    files = sorted(corpus.glob("bench_*"))
    target = files[len(stats.files) // 2]
    edit_transcript(target, seed=args.seed + 1)
    print(f"[{pages} pages] edited {target.name}; re-run ...", flush=True)
    result["edit"] = measure_run("edit", folder, env, out=out, **common)
    result["edit"]["edited"] = target.name
    keep(result)

    if args.server:
        target = files[len(stats.files) // 3]
        result["server"] = _recorded(
            lambda: bench_server(folder, env, common, out, target, args.seed + 2)
        )
        keep(result)

    if args.watch:
        print(f"[{pages} pages] qcode run --watch: two edits ...", flush=True)
        targets = [files[len(stats.files) // 4], files[(3 * len(stats.files)) // 4]]
        result["watch"] = _recorded(
            lambda: bench_watch(folder, env, common, out, targets, args.seed + 3)
        )

    units = cold["counts"].get("units", 0)
    base = result["baseline"]["encode_s"]
    privacy_s = cold["tasks_s"].get("privacy check", 0.0)
    result["summary"] = {
        "units": units,
        "codable_units": cold["counts"].get("codable_units", 0),
        "texts_embedded": result["baseline"]["texts"],
        "cold_s": cold["wall_s"],
        "units_per_s": round(units / cold["wall_s"], 1),
        "fp32_encode_s": base,
        "cold_vs_fp32_encode": round(cold["wall_s"] / base, 3),
        "encode_in_run_s": round(cold["manifest_timings_s"].get("embed", 0.0), 3),
        "privacy_s": round(privacy_s, 3),
        "privacy_share_of_cold": round(privacy_s / cold["wall_s"], 3),
        "warm_s": result["warm"]["wall_s"],
        "warm_full_s": result["warm_full"]["wall_s"],
        "edit_s": result["edit"]["wall_s"],
        "edit_startup_s": result["edit"]["startup_s"],
        "peak_rss_mb": cold["peak_rss_mb"],
        "peak_rss_children_mb": cold["children_peak_rss_mb"],
        "warm_reused_run": result["warm"]["reused_previous_run"],
        "prefect_first_use_s": result["prefect_first_use_s"],
    }
    learned = result.get("learned", {})
    if "run" in learned:
        result["summary"].update(
            {
                "learned_run_s": learned["run"]["wall_s"],
                "learned_vs_zero_shot_run": round(
                    learned["run"]["wall_s"] / result["warm_full"]["wall_s"], 3
                ),
                # A tuned coder brings its own encoder, so its first run encodes every unit
                # again, as a project's first zero-shot run does: compare the coding stages.
                "learned_vs_zero_shot_coding": round(
                    _coding_s(learned["run"]) / _coding_s(cold), 3
                ),
                "retrain_s": learned["retrain"]["wall_s"],
                "retrain_flow_s": learned["retrain"]["flow_s"],
            }
        )
    server = result.get("server", {})
    if "edit" in server:
        result["summary"].update(
            {
                "edit_server_s": server["edit"]["wall_s"],
                "edit_server_startup_s": server["edit"]["startup_s"],
                "warm_server_s": server["warm"]["wall_s"],
                "server_start_s": server["start_s"],
            }
        )
    watch = result.get("watch", {})
    if watch.get("edit_s") is not None:
        result["summary"]["edit_watch_s"] = watch["edit_s"]
        result["summary"]["edit_watch_first_s"] = watch["edits"][0]["wall_s"]
    if not args.keep:
        shutil.rmtree(corpus, ignore_errors=True)
        for name in ("out", "out-full", "out-learned"):
            shutil.rmtree(folder / name, ignore_errors=True)
    return result


# -- report -----------------------------------------------------------------------------------


def _at(result: dict, path: tuple[str, ...]) -> dict | None:
    for key in path:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def table(results: list[dict]) -> str:
    rows = [
        ("pages", "pages", "{}"),
        ("units (all / to code)", None, None),
        ("texts embedded (unique)", "texts_embedded", "{:,}"),
        ("cold run, total wall (s)", "cold_s", "{:.1f}"),
        ("  units per second", "units_per_s", "{:,.0f}"),
        ("  of which encoding in the run (s)", "encode_in_run_s", "{:.1f}"),
        ("  of which anonymity check (s)", "privacy_s", "{:.1f}"),
        ("  anonymity check / cold (target <= 0.15)", "privacy_share_of_cold", "{:.2f}"),
        ("bare fp32 encode, same texts (s)", "fp32_encode_s", "{:.1f}"),
        ("cold / fp32 encode (target <= 0.5)", "cold_vs_fp32_encode", "{:.2f}"),
        ("warm re-run, nothing changed (s; < 10)", "warm_s", "{:.1f}"),
        ("warm, new output folder, all stages (s)", "warm_full_s", "{:.1f}"),
        ("  the same with the learned coder (s)", "learned_run_s", "{:.1f}"),
        ("  learned / zero-shot, same caches", "learned_vs_zero_shot_run", "{:.2f}"),
        (
            "  coding stages (encode every unit, assign), learned / cold zero-shot (<= 1.2)",
            "learned_vs_zero_shot_coding",
            "{:.2f}",
        ),
        (f"retrain on {DECISIONS:,} decisions, process wall (s)", "retrain_s", "{:.1f}"),
        ("one transcript edited (s; target <= 5)", "edit_s", "{:.1f}"),
        ("  of which start-up (s)", "edit_startup_s", "{:.1f}"),
        ("one transcript edited, long-running server (s)", "edit_server_s", "{:.1f}"),
        ("  of which start-up (s)", "edit_server_startup_s", "{:.1f}"),
        ("warm re-run, long-running server (s)", "warm_server_s", "{:.1f}"),
        ("one transcript edited, `run --watch`: first edit (s)", "edit_watch_first_s", "{:.1f}"),
        (
            "one transcript edited, `run --watch`: next edit (s; target <= 5)",
            "edit_watch_s",
            "{:.1f}",
        ),
        ("peak RSS, cold (MB; target <= 2,000)", "peak_rss_mb", "{:,.0f}"),
        ("Prefect's database, first use only (s)", "prefect_first_use_s", "{:.1f}"),
    ]
    header = "| measure | " + " | ".join(f"{r['pages']:,} pages" for r in results) + " |"
    lines = [header, "|---|" + "---|" * len(results)]
    for label, key, fmt in rows:
        if key == "pages":
            continue
        cells = []
        for r in results:
            s = r["summary"]
            if key is None:
                cells.append(f"{s['units']:,} / {s['codable_units']:,}")
            elif s.get(key) is None:
                cells.append("-")
            else:
                cells.append(fmt.format(s[key]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    stages = ["startup", "ingest", "reuse check", "privacy check", "segment", "prototypes"]
    stages += ["embed and assign"]
    stages += ["write outputs"]
    runs = (("cold", ("cold",)), ("edit", ("edit",)), ("edit, server", ("server", "edit")))
    for name, path in runs:
        found = [_at(r, path) for r in results]
        if not all(found):
            continue
        cells = []
        for run in found:
            tasks = dict(run["tasks_s"])
            tasks["startup"] = run["startup_s"] or 0.0
            cells.append(" · ".join(f"{s} {tasks[s]:.1f}" for s in stages if s in tasks))
        lines.append(f"| {name}: seconds per stage | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        q = r["baseline"]["vs_fp32"]
        cells.append(
            f"cos min {q['cosine_min']:.4f} · same nearest prototype "
            f"{100 * q['same_nearest_prototype']:.1f}%"
        )
    lines.append(
        f"| {results[0]['baseline']['vs_fp32']['precision']} vs fp32 vectors | "
        + " | ".join(cells)
        + " |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[700])
    parser.add_argument("--quick", action="store_true", help="one 15-page corpus (CI smoke)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precision", default=None, help="default: the setting's default")
    parser.add_argument("--task-runner", default="local", choices=["local", "dask"])
    parser.add_argument("--dask-address", default=None)
    parser.add_argument(
        "--privacy", default=None, help="the privacy setting (default: the setting's default)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--name", default=None, help="results file name (default: by sizes)")
    parser.add_argument("--keep", action="store_true", help="keep corpora and outputs")
    # Internal: one measured step.
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument(
        "--server",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time warm and edited runs with a long-running Prefect server (qcode server)",
    )
    parser.add_argument(
        "--learned",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time decisions, retrain and a run with the learned coder",
    )
    parser.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time two edits in one `qcode run --watch` process",
    )
    for name in ("transcripts", "cache", "store", "out", "run-dir", "classifier"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        _step_main(args)
        return

    from pipeline.settings import Settings

    args.precision = args.precision or Settings().precision
    args.privacy = args.privacy or Settings().privacy
    sizes = [15] if args.quick else args.pages
    work = args.workdir or Path(tempfile.gettempdir()) / "qcode-bench"
    work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or ("quick" if args.quick else "pages-" + "-".join(map(str, sizes)))
    path = RESULTS / f"{name}.json"
    results: list[dict] = []
    cpu = cpu_times()
    for pages in sizes:
        # After each step and each size: a long run keeps what it has.
        def keep(part: dict) -> None:
            write_report(path, [*results, part], args, cpu)

        results.append(bench_size(pages, args, work, keep=keep))
        write_report(path, results, args, cpu)
    report = write_report(path, results, args, cpu)
    print()
    print(table(results))
    if "scaling_7000_vs_700" in report:
        s = report["scaling_7000_vs_700"]
        print(f"\n7,000 vs 700 pages: time x{s['time']} (target <= 10), peak RSS x{s['peak_rss']}")
    print(f"\nResults: {path.relative_to(ROOT)}")


def write_report(
    path: Path, results: list[dict], args: argparse.Namespace, cpu_at_start: list[int] | None
) -> dict:
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
            "cpu_steal_share": steal_share(cpu_at_start, cpu_times()),
        },
        "settings": {
            "precision": args.precision,
            "task_runner": args.task_runner,
            "privacy": args.privacy,
            "seed": args.seed,
        },
        "targets": TARGETS,
        "sizes": results,
    }
    by_pages = {r["pages"]: r["summary"] for r in results if "summary" in r}
    if 700 in by_pages and 7000 in by_pages:
        report["scaling_7000_vs_700"] = {
            "time": round(by_pages[7000]["cold_s"] / by_pages[700]["cold_s"], 2),
            "peak_rss": round(by_pages[7000]["peak_rss_mb"] / by_pages[700]["peak_rss_mb"], 2),
        }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
