"""Recall and precision of the anonymity check on transcripts with planted personal data.

Usage: python scripts/privacy_recall.py [--data tests/data/privacy_holdout] [--json OUT]
The test set (tests/data/privacy/) has 6 transcripts written for the project with names,
emails, phones, postcodes, school and place names planted, and annotations.json listing each.
A planted item counts as found when a finding of the same kind overlaps it (and, separately,
when a finding of any kind masks it). Findings that overlap no planted item are false alarms.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.privacy import measure_detection  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "privacy")
    args = parser.parse_args()
    report = measure_detection(args.data)
    print(f"{'kind':<9} {'planted':>7} {'recall':>7} {'masked':>7} {'flagged':>7} {'precision':>9}")
    for kind, r in report.items():
        print(
            f"{kind:<9} {r['planted']:>7} {r['recall'] or 0:>7.3f} "
            f"{r['masked_by_any_kind'] or 0:>7.3f} {r['flagged']:>7} {r['precision'] or 0:>9.3f}"
        )
    for kind, r in report.items():
        if r["missed"]:
            print(f"missed {kind}: {r['missed']}")
        if r["false_alarms"]:
            print(f"false alarms {kind}: {r['false_alarms']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
