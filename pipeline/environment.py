"""Keep every run offline and local before heavy libraries are imported.

Prefect, Hugging Face and sentence-transformers read these variables at import time, so the CLI
and the flows call ``configure_environment()`` first thing.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_DEFAULTS = {
    # No model or data downloads at run time: the model comes from its package path.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # torch's OpenMP threads sleep instead of spinning while they wait: on a small shared
    # machine spinning threads fight each other and whatever else runs (measured here on
    # 2 busy cores: 2 spinning threads encode 3-4x slower than 2 passive ones; see bench/).
    "OMP_WAIT_POLICY": "PASSIVE",
    # Prefect runs with a temporary in-process server and sends nothing anywhere.
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def configure_environment(project_dir: Path | None = None) -> None:
    """Set offline and no-telemetry defaults; values the user already set win."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = (project_dir or Path.cwd()) / ".prefect"
    os.environ.setdefault("PREFECT_HOME", str(home))
