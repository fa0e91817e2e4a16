"""Runs a lead starts from the review page: a coding run or a report draft, as Prefect
deployments on the project's long-running local Prefect server.

``qcode server --runs`` starts the server and a runner that serves the two deployments
(``flows.team``); the page (``qcode review --run-transcripts ... --run-codebook ...``) creates
flow runs of them through Prefect's API and shows their state, polled from Prefect. The lead picks
a transcripts folder and a codebook by name from the ones the page was started with: a request
carries a name, never a path. Each start is recorded in the store's ``audit_events`` under the
lead's account, with the flow run's id, so the page can list who started what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import QcodeError
from pipeline.store import Store
from pipeline.store_pg import is_url

CODING_FLOW, CODING_DEPLOYMENT = "code-transcripts", "team-coding"
REPORT_FLOW, REPORT_DEPLOYMENT = "draft-reports", "team-report"
START_CODING, START_REPORT = "start coding run", "start report draft"
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class TeamRunError(QcodeError):
    """Runs cannot be started from the page as configured, or Prefect cannot be reached."""

    code = "E980"
    fix = (
        "Start the Prefect server and its runner with 'qcode server --runs' in the project "
        "folder, start the page with the API address it printed (--prefect-api), and name "
        "existing transcript folders and codebook files with --run-transcripts and --run-codebook."
    )


@dataclass(frozen=True)
class RunChoices:
    """What a lead may start from the page: folders and codebooks by name, set at start-up."""

    api_url: str
    transcripts: dict[str, Path]
    codebooks: dict[str, Path]
    out_dir: Path
    cache_dir: Path | None = None


def run_choices(
    api_url: str,
    transcripts: list[Path],
    codebooks: list[Path],
    out_dir: Path,
    store_location: str | Path,
    cache_dir: Path | None = None,
) -> RunChoices:
    """Check the page's run settings once, at start-up; names are folder and file names."""
    host = urlsplit(api_url).hostname or ""
    if not api_url.startswith("http://") or host not in LOOPBACK:
        raise TeamRunError(
            f"the Prefect API must be on this machine (http://127.0.0.1:PORT/api), not "
            f"'{api_url}': Prefect's API has no login"
        )
    if is_url(store_location) and urlsplit(str(store_location)).password is not None:
        raise TeamRunError(
            "the store URL carries a password, and a run's settings are kept in Prefect's "
            "database: put the password in ~/.pgpass (or PGPASSWORD) and leave it out of the URL"
        )
    from pipeline.codebook import load_codebook
    from pipeline.ingest import find_transcripts

    folders: dict[str, Path] = {}
    for folder in transcripts:
        if not folder.is_dir() or not find_transcripts(folder):
            raise TeamRunError("no transcripts in this folder for runs from the page", folder)
        _add(folders, folder.resolve().name, folder.resolve())
    books: dict[str, Path] = {}
    for path in codebooks:
        load_codebook(path)  # a broken codebook fails now, not in a run
        _add(books, path.resolve().stem, path.resolve())
    if not folders or not books:
        raise TeamRunError("runs from the page need at least one transcript folder and codebook")
    return RunChoices(
        api_url.rstrip("/"),
        folders,
        books,
        Path(out_dir).resolve(),
        Path(cache_dir).resolve() if cache_dir else None,
    )


def _add(names: dict[str, Path], name: str, path: Path) -> None:
    if name in names and names[name] != path:
        raise TeamRunError(f"two choices are called '{name}' ({names[name]} and {path})", path)
    names[name] = path


def store_parameter(location: str | Path) -> str:
    """The store as a run's parameter: a URL as is, a file as an absolute path."""
    return str(location) if is_url(location) else str(Path(location).resolve())


def coding_parameters(
    choices: RunChoices, store_location: str | Path, transcripts: str, codebook: str
) -> dict[str, Any]:
    """The coding flow's parameters for the names a lead picked (KeyError: not a choice)."""
    settings: dict[str, str] = {"store": store_parameter(store_location)}
    if choices.cache_dir is not None:
        settings["cache_dir"] = str(choices.cache_dir)
    return {
        "transcripts_dir": str(choices.transcripts[transcripts]),
        "codebook_path": str(choices.codebooks[codebook]),
        "out_dir": str(choices.out_dir),
        "settings": settings,
    }


def report_parameters(choices: RunChoices, store_location: str | Path) -> dict[str, Any]:
    return {
        "store_path": store_parameter(store_location),
        "out_dir": str(choices.out_dir / "reports"),
    }


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def start_run(choices: RunChoices, deployment: str, parameters: dict[str, Any]) -> str:
    """A flow run of a served deployment (``flow/deployment``); its id. The runner started by
    ``qcode server --runs`` picks it up within a few seconds."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    try:
        with _client(choices.api_url) as client:
            found = client.read_deployment_by_name(deployment)
            run = client.create_flow_run_from_deployment(found.id, parameters=parameters)
    except ObjectNotFound:
        raise TeamRunError(
            f"the Prefect server has no deployment '{deployment}': start the runner with "
            "'qcode server --runs'"
        ) from None
    except (httpx.HTTPError, OSError, RuntimeError) as error:
        raise TeamRunError(
            f"the Prefect server at {choices.api_url} cannot be reached ({error})"
        ) from None
    return str(run.id)


def record_start(store: Store, account: str, action: str, flow_run: str, **what: str) -> None:
    """The start in the audit trail, with the flow run's id (how the page lists runs)."""
    from pipeline.accounts import record_event

    record_event(store, account, action, json.dumps({"flow_run": flow_run, **what}))


def started_runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs started from the page: who, when, what (from the audit trail)."""
    rows = store.db.execute(
        "SELECT account, at, action, detail FROM audit_events WHERE action IN (?, ?)"
        " ORDER BY event_id DESC LIMIT ?",
        (START_CODING, START_REPORT, limit),
    ).fetchall()
    return [{"account": a, "at": t, "action": k, **json.loads(d)} for a, t, k, d in rows]


def run_states(choices: RunChoices, flow_runs: list[str]) -> dict[str, dict[str, Any]]:
    """Each flow run's state as Prefect has it now (name, type, message); empty if Prefect
    cannot be reached (the page says so rather than failing)."""
    import uuid

    import httpx
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    if not flow_runs:
        return {}
    ids = [uuid.UUID(i) for i in flow_runs]
    try:
        with _client(choices.api_url) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
            )
    except (httpx.HTTPError, OSError, RuntimeError):
        return {}
    states = {}
    for run in runs:
        state = run.state
        states[str(run.id)] = {
            "name": state.name if state else "Unknown",
            "type": state.type.value if state else "UNKNOWN",
            "message": (state.message or "") if state and state.is_final() else "",
        }
    return states
