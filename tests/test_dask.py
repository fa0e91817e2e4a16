"""The flow on a Dask cluster (prefect-dask) gives exactly the in-process outputs."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import CODEBOOK, SAMPLE

pytestmark = pytest.mark.slow


def test_dask_cluster_of_two_workers_gives_the_in_process_outputs(prefect_harness, tmp_path):
    from distributed import LocalCluster

    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("wp01_head_teacher.md", "wp07_group_class_teachers.md"):
        shutil.copy(SAMPLE / name, folder)
    # Separate caches: both runs encode every text themselves.
    here = code_transcripts(
        folder, CODEBOOK, tmp_path / "here", Settings(cache_dir=tmp_path / "c1", chunk_size=128)
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        settings = Settings(
            cache_dir=tmp_path / "c2",
            chunk_size=128,
            task_runner="dask",
            dask_address=cluster.scheduler_address,
        )
        there = code_transcripts(folder, CODEBOOK, tmp_path / "there", settings)
        busy = [w for w in cluster.workers.values() if w.state.executed_count > 0]
    assert len(busy) == 2, "both workers should have coded chunks"
    for table in ("units", "suggestions", "codings"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(here / f"{table}.parquet"), pd.read_parquet(there / f"{table}.parquet")
        )
    mine, theirs = (json.loads((d / "manifest.json").read_text()) for d in (here, there))
    assert theirs["execution"]["task_runner"] == "dask" and theirs["execution"]["chunks"] > 4
    assert mine["execution"]["task_runner"] == "local"
    # Chunks in flight at once may each encode a repeated text ("Yes."): never fewer.
    encoded = mine["counts"].pop("newly_embedded"), theirs["counts"].pop("newly_embedded")
    assert theirs["counts"] == mine["counts"] and 500 < encoded[0] <= encoded[1]
    assert len(pd.read_parquet(there / "suggestions.parquet")) > 100
