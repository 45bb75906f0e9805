"""Per-target outcomes from a pytest JUnit XML report, so a red target does not un-cache green ones.

pytest names each test case after its node id with ``/`` turned into ``.`` (``packages.slime-loss.tests.
test_kl`` + ``.test_x``); a collection error is a case named after the module. A target counts as green
when the report holds at least one case under its tests directory and none of them failed or errored.
This module only reads reports; it does not run pytest or write the cache.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from .workspace import Member

REPORT_FLAG = "--junitxml"
REPORT_NAME = "junit.xml"
_BAD = ("failure", "error")


def _cases(report: Path) -> list[tuple[str, bool]]:
    """``(dotted case id, passed-or-skipped)`` for every test case in the report."""
    try:
        tree = ET.parse(report)
    except (OSError, ET.ParseError):
        return []
    cases = []
    for case in tree.iter("testcase"):
        dotted = ".".join(part for part in (case.get("classname", ""), case.get("name", "")) if part)
        cases.append((dotted, not any(case.find(tag) is not None for tag in _BAD)))
    return cases


def green_targets(report: Path, targets: Iterable[Member]) -> set[str]:
    """Names of the targets whose cases in ``report`` all passed (or were skipped)."""
    cases = _cases(report)
    green = set()
    for target in targets:
        prefix = target.tests_path.replace("/", ".") + "."
        mine = [ok for dotted, ok in cases if dotted.startswith(prefix)]
        if mine and all(mine):
            green.add(target.name)
    return green
