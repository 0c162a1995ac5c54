"""One closing line for `make e2e-node`: `N passed, N failed` from pytest's JUnit XML (pytest's
own summary leaves out the counts that are zero)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def summary(path: str) -> str:
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    assert suite is not None
    tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return f"{tests - skipped - failed} passed, {failed} failed"


if __name__ == "__main__":
    print(summary(sys.argv[1]))
