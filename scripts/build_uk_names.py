"""Build pipeline/data/uk_first_names.txt: first names given to UK babies, for the anonymity check.

Why: the 1990 US Census list misses many names people in UK interviews carry (Eilidh, Mhairi,
Ruaridh, Graeme, Yusuf, Zara, Kasia ...). The official birth registers list every first name given
to three or more babies a year:

- Scotland 1974-2020: National Records of Scotland, "Babies' first names, all names, all years";
- England and Wales 1996-2020: Office for National Statistics, baby names;
- Northern Ireland 1997-2020: Northern Ireland Statistics and Research Agency, baby names;

each under the Open Government Licence v3.0, as collected in the CC0 R package ``ukbabynames``
0.3.0 (https://github.com/mine-cetinkaya-rundel/ukbabynames, files ``data/scotbabynames.rda``,
``data/ewbabynames.rda``, ``data/nibabynames.rda``).

A name is kept when at least MIN_BABIES babies were given it over all years and nations: rare
spellings are left to spaCy, so that a one-off name that is also a place or a word does not
become a name everywhere. The threshold was fixed before any measurement. Only names are
written (lower case, one per line, sorted), no counts.

Usage (reading R data files needs ``pyreadr``, which qcode itself does not use):
    pip install pyreadr pandas   # in a scratch environment
    python scripts/build_uk_names.py scotbabynames.rda ewbabynames.rda nibabynames.rda
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

MIN_BABIES = 20
OUT = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "uk_first_names.txt"
NAME = re.compile(r"^[^\W\d_]+(?:['’-][^\W\d_]+)*$")  # letters, inner apostrophes or hyphens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rda", nargs="+", type=Path, help="the ukbabynames data/*.rda files")
    args = parser.parse_args()
    import pyreadr

    babies: Counter[str] = Counter()
    for path in args.rda:
        (frame,) = pyreadr.read_r(str(path)).values()
        for name, n in zip(frame["name"].astype(str), frame["n"], strict=True):
            babies[name.strip().lower()] += int(n)
    kept = sorted(name for name, n in babies.items() if n >= MIN_BABIES and NAME.match(name))
    OUT.write_text("\n".join(kept) + "\n", encoding="utf-8")
    print(f"{len(kept)} of {len(babies)} names (>= {MIN_BABIES} babies) -> {OUT}")


if __name__ == "__main__":
    main()
