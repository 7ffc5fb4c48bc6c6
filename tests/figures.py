"""Figures a test reports for the end of the run (the run times of the long suites).

pytest captures a passing test's output, so `report(line)` keeps the line; tests/conftest.py moves
it onto the test's report (which pytest-xdist sends from its workers) and prints them all in a
"figures" section after the results, in CI too.
"""

from __future__ import annotations

REPORTED: list[str] = []


def report(line: str) -> None:
    REPORTED.append(line)
