"""Shared, expensive fixtures: the real spaCy pipeline, the real bundled model, the sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.environment import configure_environment

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "transcripts_sample"
CODEBOOK = ROOT / "codebooks" / "west_partnership.yaml"

configure_environment(ROOT)


@pytest.fixture(scope="session")
def nlp():
    from pipeline.segment import load_sentencizer

    return load_sentencizer()


@pytest.fixture(scope="session")
def encoder():
    from pipeline.embed import load_encoder

    return load_encoder()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One embedding cache for the whole session: each sample text is encoded once."""
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def embedding_cache(cache_dir):
    from pipeline.embed import EmbeddingCache

    cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
    yield cache
    cache.close()


@pytest.fixture(scope="session")
def codebook():
    from pipeline.codebook import load_codebook

    return load_codebook(CODEBOOK)


@pytest.fixture(scope="session")
def sample_transcripts():
    from pipeline.ingest import read_transcripts

    transcripts, problems = read_transcripts(SAMPLE)
    return transcripts, problems


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server for the whole session (cold start ~13 s here). It may take
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS to start (default 120, from
    pipeline.environment; raise it on a crowded machine)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture(scope="session")
def sample_run(prefect_harness, tmp_path_factory, cache_dir):
    """One real flow run over the bundled sample, shared by the end-to-end tests."""
    from flows.coding import code_transcripts
    from pipeline.settings import Settings

    out = tmp_path_factory.mktemp("outputs")
    run_dir = code_transcripts(SAMPLE, CODEBOOK, out, Settings(cache_dir=cache_dir))
    return Path(run_dir)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_qcode(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: int = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """``qcode ARGS`` in a real process: what a person sees, tracebacks included; ``input``
    is typed on its standard input (a password)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


from bench.corpus import record_real_run  # noqa: E402  (shared with bench/review_latency.py)


def rerun_with_edit(
    project_store: Path, tmp_path: Path, edit_text, nlp, encoder, codebook, cache
) -> None:
    """A new run over the sample in which WP-02's file was edited by ``edit_text(body)``."""
    import shutil

    from pipeline.ingest import read_transcripts

    folder = tmp_path / "edited"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("gold", "double_coded"))
    source = folder / "wp02_class_teacher.txt"
    head, body = source.read_text(encoding="utf-8").split("\n---\n", 1)
    source.write_text(head + "\n---\n" + edit_text(body), encoding="utf-8")
    transcripts, problems = read_transcripts(folder)
    record_real_run(project_store, transcripts, problems, nlp, encoder, codebook, cache)


@pytest.fixture(scope="session")
def _sample_project_template(
    tmp_path_factory, nlp, encoder, codebook, sample_transcripts, embedding_cache
):
    """A project store holding one real run over the sample, built once per test session."""
    transcripts, problems = sample_transcripts
    path = tmp_path_factory.mktemp("project") / "project.sqlite"
    return record_real_run(path, transcripts, problems, nlp, encoder, codebook, embedding_cache)


@pytest.fixture
def project_store(_sample_project_template, tmp_path):
    """A fresh copy of the sample project store for one test (path to the .sqlite file)."""
    import shutil

    path = tmp_path / "project.sqlite"
    shutil.copy(_sample_project_template, path)
    return path


# -- required tests: in CI a skip is a failure ---------------------------------------------------
# Browser, PDF and crash tests skip on a machine without Chromium or LibreOffice; in CI (the
# environment variable CI is set, as .ci/run does) such a skip would hide that nothing was
# tested, so a skipped test marked ``required`` is reported as failed there.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "required: must run in CI (env CI set): a skip there is a failure"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and item.get_closest_marker("required"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"required test skipped in CI (install what it needs): {reason}"


# -- the store on both backends: SQLite files and a throwaway PostgreSQL cluster -----------------


@pytest.fixture(scope="session")
def pg_cluster():
    """A real PostgreSQL cluster (initdb + pg_ctl, unix socket in a temporary folder) for the
    session; skipped where PostgreSQL is not installed, failed in CI (``.ci/run`` installs it)."""
    from pipeline.pgcluster import Cluster, find_binary

    if find_binary("initdb") is None or find_binary("pg_ctl") is None:
        message = "PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Cluster() as cluster:
        yield cluster


def new_database(cluster, template: str | None = None) -> str:
    """A fresh database in the cluster (a copy of ``template`` if given); its URL."""
    import uuid

    import psycopg

    name = f"t{uuid.uuid4().hex[:16]}"
    with psycopg.connect(cluster.url(), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return cluster.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request) -> str:
    return request.param


@pytest.fixture
def store_location(request, store_backend, tmp_path) -> Path | str:
    """Where a new, empty project store goes: an SQLite path or a PostgreSQL URL."""
    if store_backend == "sqlite":
        return tmp_path / "p.sqlite"
    return new_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture(scope="session")
def _pg_project_template(pg_cluster, _sample_project_template) -> str:
    """The sample project copied into a PostgreSQL database once (``qcode store copy``)."""
    from pipeline.store import Store
    from pipeline.store_copy import copy_store

    url = new_database(pg_cluster)
    with Store(_sample_project_template) as source, Store(url) as destination:
        copy_store(source, destination)
    return url.split("?")[0].rsplit("/", 1)[-1]


@pytest.fixture
def project_location(request, store_backend, project_store) -> Path | str:
    """A fresh copy of the sample project on the backend under test (path or URL)."""
    if store_backend == "sqlite":
        return project_store
    cluster = request.getfixturevalue("pg_cluster")
    return new_database(cluster, template=request.getfixturevalue("_pg_project_template"))
