"""Install the system package of the Celery stack (`make demo STACK=celery`, its end-to-end test):
Debian's `redis-server` (the broker; PostgreSQL comes from a wheel in requirements.txt). Like
scripts/install_test_tools.py: only what is missing, only as root with apt-get; elsewhere it says
what to install and exits 0 (the stack then refuses to start with that message, the test skips).

The services run as processes of the stack (scripts/celery_stack.py), never as the system services
the packages come with.
"""

from __future__ import annotations

import sys

from apt_packages import apt_install
from celery_stack import redis_server


def missing_packages() -> list[str]:
    return [] if redis_server() else ["redis-server"]


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
