"""Serve the coding flow on a schedule (e.g. fresh codings and drafts every morning).

Needs a local Prefect server, started separately and bound to this machine only:

    PREFECT_HOME=.prefect prefect server start --host 127.0.0.1 &
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve \
        --transcripts transcripts/ --codebook codebooks/west_partnership.yaml --cron "0 6 * * *"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flows import configure_environment
from flows.coding import code_transcripts


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=Path, required=True)
    parser.add_argument("--codebook", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    parser.add_argument("--cron", default="0 6 * * *", help="When to run (cron, local time).")
    parser.add_argument("--name", default="morning-coding")
    args = parser.parse_args()
    code_transcripts.serve(
        name=args.name,
        cron=args.cron,
        parameters={
            "transcripts_dir": str(args.transcripts.resolve()),
            "codebook_path": str(args.codebook.resolve()),
            "out_dir": str(args.out.resolve()),
        },
    )


if __name__ == "__main__":
    main()
