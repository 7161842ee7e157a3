"""Install the system tools the tests need (run by `make test` before pytest).

Browser tests drive Debian's Chromium headless through playwright (over CDP: only `chromium` is
needed; `chromium-driver` comes along for WebDriver tools). On a fresh machine where we are root,
install them with apt; elsewhere (not root, no apt) say so: those tests then skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"{CHROMIUM} is missing and apt-get cannot run here: browser tests will be skipped",
            file=sys.stderr,
        )
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        result = subprocess.run(command, env=env, check=False, timeout=900)
        if result.returncode != 0:
            print(
                f"{' '.join(command)} failed ({result.returncode}): browser tests will be skipped",
                file=sys.stderr,
            )
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
