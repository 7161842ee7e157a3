"""Install the system packages of the Celery stack (`make demo STACK=celery`, its end-to-end test):
Debian's `postgresql` (the metadata database) and `redis-server` (the broker). Like
scripts/install_test_tools.py: only what is missing, only as root with apt-get; elsewhere it says
what to install and exits 0 (the stack then refuses to start with that message, the test skips).

The services run as processes of the stack (scripts/celery_stack.py), never as the system services
the packages come with.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apt_packages import apt_install  # noqa: E402
from celery_stack import postgres_bin, redis_server  # noqa: E402


def missing_packages() -> list[str]:
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if redis_server() is None:
        missing.append("redis-server")
    return missing


def main() -> int:
    missing = missing_packages()
    if not missing:
        return 0
    status = apt_install(missing)
    if status is None:
        print(
            f"missing {', '.join(missing)} and apt-get cannot run here: install them to run the Celery stack",
            file=sys.stderr,
        )
        return 0
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
