"""Prefect plumbing shared by the flows: how a flow starts, and where its workers report.

Why here and not in a flow: a flow module only wires stages. This holds what Prefect itself
needs: a head start for the coding flow (``HeadStartFlow``), the temporary server's address
for Dask workers, and log records without Python tracebacks for a person's input errors.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import inspect
import logging
from pathlib import Path
from typing import Any

from prefect import Flow

from pipeline.errors import QcodeError
from pipeline.preload import models_likely_needed, preload
from pipeline.settings import Settings
from pipeline.tune import run_settings

# At exit, let the interpreter skip its final garbage-collection sweep over the millions of
# objects torch, spaCy and pandas leave behind: 1.6-1.8 s of every `qcode run` here, for
# memory the operating system takes back anyway.
atexit.register(gc.freeze)


class _NoTracebackForInputErrors(logging.Filter):
    """A QcodeError is a message for a person (file, line, fix); Prefect logs it without a
    Python traceback, which tells a user nothing (the CLI prints the message itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], QcodeError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(_NoTracebackForInputErrors())


class HeadStartFlow(Flow):
    """A flow over a transcripts folder, plus a head start: when the transcripts or settings
    differ from the last run's, spaCy and the encoder load in a background thread while
    Prefect's temporary server starts (3-5 s here), instead of after it. Runs it starts are
    ordinary Prefect flow runs, on the same temporary server Prefect would start."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):  # a head start only, never in the run's way
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments.get("settings")
            settings = run_settings(
                given if isinstance(given, Settings) else Settings.model_validate(given or {})
            )
            out = Path(bound.arguments.get("out_dir") or "outputs")
            if models_likely_needed(Path(bound.arguments["transcripts_dir"]), out, settings):
                server = temporary_server()  # imported before the loading thread competes
                preload(settings, sentencizer=True)
                if server is not None:
                    server.start()  # the one Prefect itself would start; it finds it running
        with without_heartbeats():
            return super().__call__(*args, **kwargs)


@contextlib.contextmanager
def without_heartbeats() -> Any:
    """Run a flow without Prefect's heartbeat thread. Heartbeats let a server notice a flow run
    whose worker died; a run here lives and dies with the process that called it, and nothing
    in this project watches them. The thread sleeps in 1 s steps and the flow waits for it to
    wake at the end: about 0.4-0.8 s of every run, most of what an edited transcript costs in
    ``qcode run --watch`` besides the work itself."""
    import prefect.context

    context = prefect.context.get_settings_context()
    current = context.settings
    if _QUIET.get("from") is not current:  # building Prefect's settings anew took 0.2 s
        quiet = current.copy_with_update(updates={"flows.heartbeat_frequency": None})
        _QUIET.update({"from": current, "to": quiet})
    with prefect.context.SettingsContext(profile=context.profile, settings=_QUIET["to"]):
        yield


_QUIET: dict[str, Any] = {}  # Prefect's current settings, and them without heartbeats


@contextlib.contextmanager
def api_url_for_workers() -> Any:
    """Dask workers in other processes must report to this run's Prefect API: name the
    temporary server's address explicitly (Prefect leaves it unset in ephemeral mode)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if not server.running:
        yield
        return
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def temporary_server() -> Any:
    """Prefect's temporary server for this process, when Prefect would start one (no API URL
    set, not inside a flow run); None otherwise."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or FlowRunContext.get() is not None:
        return None
    from prefect.server.api.server import SubprocessASGIServer

    return SubprocessASGIServer()
