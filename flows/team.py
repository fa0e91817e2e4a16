"""The runner for runs started from the review page: serves the coding flow and the report
flow as deployments on the project's long-running Prefect server (``PREFECT_API_URL``) and
executes each flow run a lead creates, one at a time, in its own process.

``qcode server --runs`` starts it beside the server; by hand (the server already running):

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.team
"""

from __future__ import annotations

from prefect import serve

from flows import configure_environment
from flows.coding import code_transcripts
from flows.reports import draft_reports_flow
from pipeline.team_runs import CODING_DEPLOYMENT, REPORT_DEPLOYMENT


def main() -> None:
    configure_environment()
    serve(
        code_transcripts.to_deployment(name=CODING_DEPLOYMENT),
        draft_reports_flow.to_deployment(name=REPORT_DEPLOYMENT),
        limit=1,  # one run at a time: each loads the model, and runs write one store
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
