"""Debian packages the project's commands install when they are missing: `make test` and
`make demo STACK=celery` (scripts/install_test_tools.py, scripts/install_stack_tools.py).

Only as root and only with apt-get; each caller decides what a machine without them means.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def apt_install(packages: list[str]) -> int | None:
    """Install ``packages`` with apt-get (after an update). None when apt-get cannot run here (not
    root, or no apt-get); otherwise apt-get's exit status, 0 once installed (a failure is also
    reported on stderr with its command)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(command, env=env, check=False, timeout=900)
        if result.returncode != 0:
            print(f"{' '.join(command)} failed ({result.returncode})", file=sys.stderr)
            return result.returncode
    return 0
