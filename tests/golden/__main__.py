"""`python -m tests.golden [--update] [CASE …]`: compare the golden images, or rewrite them."""

from __future__ import annotations

import argparse
import sys

from tests.golden import CASES, difference, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite the golden images from the current drawing")
    parser.add_argument("cases", nargs="*", help=f"cases (default: all {len(CASES)})")
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    failed = 0
    for case in args.cases or CASES:
        actual = CASES[case]()
        if args.update:
            path(case).write_bytes(actual)
            print(f"wrote {path(case)} ({len(actual):,} bytes)")
            continue
        problem = difference(actual, path(case).read_bytes()) if path(case).exists() else "no golden image"
        print(f"{case}: {problem or 'ok'}")
        failed += problem is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
