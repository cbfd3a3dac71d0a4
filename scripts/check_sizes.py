"""Check source file sizes: hard cap 500 lines, and report the median (style.md §3.4)."""

import statistics
import sys
from pathlib import Path

HARD_CAP = 500
ROOT = Path(__file__).resolve().parents[1] / "src"


def main() -> int:
    sizes = {p: len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    too_big = sorted((n, p) for p, n in sizes.items() if n > HARD_CAP)
    median = statistics.median(sizes.values())
    print(f"{len(sizes)} source files, median {median:.0f} lines, largest {max(sizes.values())}")
    for n, p in too_big:
        print(f"  {p.relative_to(ROOT.parent)}: {n} lines (cap {HARD_CAP})")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
