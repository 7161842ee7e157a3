"""The README's paths are real: every file it names (`dags/...py`, `docs/...md`, ...) exists, so
"Follow one partition" and the links cannot drift from the tree unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FOLDERS = "dags|plugins|trading_lib|trading_airflow|scripts|bench|docs|deploy|tests"
NAMED = re.compile(rf"[`(]((?:{FOLDERS})/[\w./-]+\.(?:py|md|yaml))")


def test_every_file_the_readme_names_exists():
    text = (PROJECT / "README.md").read_text()
    named = set(NAMED.findall(text))
    assert len(named) >= 8, named  # the partition's path alone names eight
    assert sorted(p for p in named if not (PROJECT / p).is_file()) == []


def test_the_partition_path_lists_every_module_analyze_partition_imports():
    """The eight files of "Follow one partition" include each trading_lib module that
    pipeline.analyze_partition and the bar store's look-back read import."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("### Follow one partition", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d+\. `([\w/]+\.py)`", section, flags=re.MULTILINE)
    assert len(listed) == 8, listed
    for module in ("pipeline", "store", "bar_contract", "analytics", "layout", "storage"):
        assert f"trading_lib/{module}.py" in listed, module
