"""Install the system tools the tests need (run by `make test` before pytest).

Browser tests drive Debian's Chromium headless through playwright (over CDP: only `chromium` is
needed; `chromium-driver` comes along for WebDriver tools). On a fresh machine where we are root,
install them with apt; elsewhere (not root, no apt) say so: those tests then skip with that reason.
"""

from __future__ import annotations

import os
import sys

from apt_packages import apt_install

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    status = apt_install(["chromium", "chromium-driver"])
    if status == 0:
        return 0
    reason = "apt-get cannot run here" if status is None else f"apt-get failed ({status})"
    print(f"{CHROMIUM} is missing and {reason}: browser tests will be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
