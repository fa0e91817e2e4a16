#!/usr/bin/env bash
# Install a qcode wheel into a fresh virtual environment, outside the project folder, and code
# the sample with it: proof that the wheel carries everything qcode needs (templates, static
# files, schemas) and that its dependencies bring the sentence and spaCy models.
#   scripts/check_wheel.sh dist/qcode-0.1.0-py3-none-any.whl
# Environment: PYTHON (default python3), FIND_LINKS (e.g. "--find-links /opt/wheels", where
# torch's CPU wheel lies), KEEP=1 to keep the temporary folder.
set -euo pipefail
wheel="$(realpath "$1")"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/qcode-wheel.XXXXXX)"
cleanup() {
    # Prefect's temporary server can outlive a run on a loaded machine: end what this check
    # started (only processes running from this check's own folder), then remove the folder.
    pids="$(pgrep -f "$work/venv/" || true)"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
    [ "${KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
PYTHON="${PYTHON:-python3}"
echo "wheel check in $work"
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet)
# torch first, from the CPU wheel: otherwise pip may pick a multi-GB CUDA build.
# shellcheck disable=SC2086
"${pip[@]}" ${FIND_LINKS:-} torch==2.13.0
# shellcheck disable=SC2086
"${pip[@]}" ${FIND_LINKS:-} "$wheel"
cp -r "$root/transcripts_sample" "$root/codebooks" "$work/"
cd "$work"
# qcode must come from the installed wheel, not from a source folder.
where="$(venv/bin/python -c 'import pipeline, flows; print(pipeline.__file__, flows.__file__)')"
case "$where" in
    "$work/venv/"*) ;;
    *) echo "qcode was imported from $where, not from the wheel" >&2; exit 1 ;;
esac
venv/bin/qcode validate-codebook codebooks/west_partnership.yaml
# Output to files, not a pipe: a lingering Prefect server would hold a pipe open.
venv/bin/qcode run transcripts_sample --codebook codebooks/west_partnership.yaml --out outputs \
    >run.out 2>run.log || { cat run.out; tail -40 run.log >&2; exit 1; }
cat run.out
grep -q "^Coded 8 transcripts" run.out
venv/bin/qcode report --include-suggestions --format html,docx --out reports
test -s reports/theme_report.html && test -s reports/theme_report.docx
echo "wheel check passed: $(basename "$wheel") installs into a fresh environment and codes the sample"
