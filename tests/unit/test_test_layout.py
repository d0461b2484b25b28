"""The test tiers' layout: pytest collects tests/unit and tests/e2e in one session (`make test`), where
two test modules with one basename make collection fail ("import file mismatch") — `make test-fast`
alone would not notice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique_across_tiers():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
