"""The process manager of the local stacks: what /proc says about processes and ports, and a small
supervisor that keeps a stack's components running (scripts/local_airflow.py, scripts/celery_stack.py).

Standard library only (it runs before anything is imported). The supervisor does what systemd's
`Restart=on-failure`, compose's `restart:` or a Kubernetes restart policy do for one machine: it
starts each component in a session of its own, restarts one that exits with a backoff (1, 2, 4, 8 s,
at most 30 s), and gives up on a component that exited RESTART_LIMIT times in RESTART_WINDOW seconds
(a crash loop), naming it and the last lines of its log. Chosen over supervisord or honcho: those
run a fixed list of commands, while a stack starts in steps (PostgreSQL ready, its database
migrated, then the API, then the scheduler) and a restart must first end the exited component's
orphans (a SIGKILLed scheduler leaves its LocalExecutor workers and its log server's port behind),
which neither does; this is about 200 lines of subprocess and /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESTART_LIMIT = 5  # exits of one component within RESTART_WINDOW seconds that stop the stack
RESTART_WINDOW = 600.0
BACKOFF_MAX = 30.0
LOG_TAIL_LINES = 20
EVENTS_KEPT = 50


# -- processes, sockets: /proc ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: with the pid, identifies a process over time
    cmdline: str


def proc_info(pid: int) -> ProcInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    cmd = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], int(fields[19]), cmd)


def processes() -> list[ProcInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_info(int(entry))) is not None:
            found.append(info)
    return found


def alive(info: ProcInfo | None) -> bool:
    return info is not None and info.state not in ("Z", "X")


def proc_environ(pid: int) -> dict[str, str]:
    """The environment a process was started with (what it inherited), {} if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def ancestors() -> set[int]:
    """This process and its ancestors: never signalled, whatever their environment."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        info = proc_info(pid)
        pid = info.ppid if info else 0
    return pids


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_owners(inodes: set[int]) -> set[int]:
    """Pids of the processes holding one of these socket inodes."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                        owners.add(int(entry))
                        break
    return owners


def port_holders(port: int) -> str:
    """'pid 1234 (python -m http.server ...)' for each process listening on ``port``."""
    holders = [proc_info(pid) for pid in sorted(socket_owners(listening_inodes(port)))]
    return ", ".join(f"pid {p.pid} ({p.cmdline[:60]})" for p in holders if p is not None)


def port_free(port: int) -> bool:
    if listening_inodes(port):
        return False
    # What the servers do: SO_REUSEADDR (a TIME_WAIT connection does not count), all addresses.
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == 97:  # EAFNOSUPPORT: no IPv6 here
                continue
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (all held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def send_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def session_members(sid: int, since: int) -> list[ProcInfo]:
    """Live processes in session or process group ``sid`` started at or after tick ``since`` (a
    component started with start_new_session: its pid is its session id, kept by its orphans)."""
    return [p for p in processes() if alive(p) and sid in (p.sid, p.pgid) and p.start >= since]


def kill_session(sid: int, since: int, timeout: float = 10) -> None:
    """SIGKILL what is left of a component's session (its orphans) and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while (members := session_members(sid, since)) and time.monotonic() < deadline:
        for info in members:
            send_signal(info.pid, signal.SIGKILL)
        time.sleep(0.1)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (read from its end: logs grow large)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.rstrip().splitlines()[-lines:]


# -- the supervisor --------------------------------------------------------------------------------
@dataclass
class Component:
    """One supervised process. ``ready`` says it serves (a dependent starts or restarts only
    then); ``requires`` names the components that must be ready before it (re)starts."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    ready: Callable[[], bool] | None = None
    requires: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    service: bool = False  # stopped after the others (PostgreSQL, Redis, S3: the others hold connections)
    process: subprocess.Popen | None = None
    start_tick: int = 0
    started_at: float = 0.0  # wall clock
    exits: list[float] = field(default_factory=list)  # monotonic times of its exits
    restarts: int = 0
    last_exit: int | None = None
    restart_at: float | None = None  # monotonic time of the next start after an exit


class CrashLoop(RuntimeError):
    """A component exited RESTART_LIMIT times within RESTART_WINDOW seconds."""

    def __init__(self, component: Component):
        self.component = component.name
        self.log = component.log
        self.tail = log_tail(component.log)
        super().__init__(
            f"{component.name} exited {len(component.exits)} times in "
            f"{RESTART_WINDOW / 60:.0f} minutes (last exit code {component.last_exit}); "
            f"its log: {component.log}"
        )


class Stopping(RuntimeError):
    """The supervisor was asked to stop while it waited."""


class Supervisor:
    """Starts components, restarts those that exit, records all of it in a JSON state file that
    other processes read (`make status`, the demo's progress, the tests)."""

    def __init__(self, state_file: Path, base_state: dict, clock=time.monotonic, sleep=time.sleep):
        self.state_file = state_file
        self.base_state = base_state  # boot_id, settings: what the stack records besides
        self.components: dict[str, Component] = {}
        self.events: list[dict] = []
        self.phase = "starting"
        self.failure: dict | None = None
        self.stopping = False
        self._clock, self._sleep = clock, sleep
        self._sequence = 0

    # -- what others read ----------------------------------------------------------------------
    def event(self, message: str) -> None:
        self._sequence += 1
        self.events = [*self.events, {"n": self._sequence, "at": time.time(), "message": message}][
            -EVENTS_KEPT:
        ]
        print(time.strftime("%H:%M:%S"), message, flush=True)  # the supervisor's own log
        self.write_state()

    def write_state(self) -> None:
        state = {
            **self.base_state,
            "supervisor": {"pid": os.getpid(), "start": getattr(proc_info(os.getpid()), "start", 0)},
            "phase": self.phase,
            "failure": self.failure,
            "events": self.events,
            "components": {
                c.name: {
                    "pid": c.process.pid if c.process else None,
                    "pgid": c.process.pid if c.process else None,
                    "sid": c.process.pid if c.process else None,
                    "start": c.start_tick,
                    "started_at": c.started_at,
                    "running": bool(c.process and c.process.poll() is None),
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                    "log": str(c.log),
                }
                for c in self.components.values()
            },
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)  # readers never see half a file

    # -- starting, watching ----------------------------------------------------------------------
    def add(self, component: Component) -> None:
        self.components[component.name] = component
        self._launch(component)

    def _launch(self, c: Component) -> None:
        c.log.parent.mkdir(parents=True, exist_ok=True)
        with open(c.log, "ab") as log:
            c.process = subprocess.Popen(
                c.command,
                env=c.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # pid = process group = session id: its orphans are found
                cwd=c.cwd,
            )
        info = proc_info(c.process.pid)
        c.start_tick = info.start if info else 0
        c.started_at = time.time()
        c.restart_at = None
        (self.state_file.parent / f"{c.name}.pid").write_text(str(c.process.pid))
        self.write_state()

    def _ready(self, name: str) -> bool:
        c = self.components.get(name)
        if c is None or c.process is None or c.process.poll() is not None:
            return False
        return c.ready() if c.ready else True

    def poll(self) -> None:
        """Notice exits, restart what is due; raises CrashLoop for a component in a crash loop."""
        now = self._clock()
        for c in self.components.values():
            if c.process is not None and c.process.poll() is not None:
                self._exited(c, now)
            if c.process is None and c.restart_at is not None and now >= c.restart_at:
                waiting = [r for r in c.requires if not self._ready(r)]
                if not waiting:
                    c.restarts += 1
                    self._launch(c)
                    self.event(f"{c.name} restarted (restart {c.restarts}; pid {c.process.pid})")

    def _exited(self, c: Component, now: float) -> None:
        c.last_exit = c.process.returncode
        pid = c.process.pid
        c.process = None
        kill_session(pid, c.start_tick)  # its orphans: workers, log servers, backends
        c.exits = [t for t in c.exits if now - t < RESTART_WINDOW] + [now]
        if len(c.exits) >= RESTART_LIMIT:
            self.failure = {
                "component": c.name,
                "message": str(CrashLoop(c)),
                "log": str(c.log),
                "tail": log_tail(c.log),
            }
            self.event(f"{c.name} exited (code {c.last_exit}) {len(c.exits)} times in 10 minutes: giving up")
            raise CrashLoop(c)
        delay = min(BACKOFF_MAX, 2.0 ** (len(c.exits) - 1))
        c.restart_at = now + delay
        self.event(
            f"{c.name} exited (code {c.last_exit}); restarting in {delay:.0f} s "
            f"(exit {len(c.exits)} of {RESTART_LIMIT} allowed in 10 minutes); log: {c.log}"
        )

    def wait_until(self, condition: Callable[[], bool], what: str, poll: float = 0.5) -> None:
        """Poll (restarting what exits) until ``condition``; no deadline: a busy machine is slow,
        not broken. Raises CrashLoop, or Stopping when asked to stop."""
        self.phase = what
        self.write_state()
        while not condition():
            if self.stopping:
                raise Stopping(what)
            self.poll()
            self._sleep(poll)

    def run(self, poll: float = 1.0) -> None:
        """Watch until asked to stop."""
        self.phase = "running"
        self.write_state()
        while not self.stopping:
            self.poll()
            self._sleep(poll)

    def stop_all(self, timeout: float = 30) -> None:
        """The components first, then the services; each group: its stop signal, SIGKILL after
        ``timeout`` seconds; then whatever is left of their sessions."""
        self.phase = "stopping"
        self.write_state()
        for services in (False, True):
            group = [c for c in self.components.values() if c.service == services and c.process]
            for c in group:
                send_signal(c.process.pid, c.stop_signal)
            deadline = time.monotonic() + timeout
            for c in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                if c.process.poll() is None:
                    c.process.kill()
                    c.process.wait()
                kill_session(c.process.pid, c.start_tick)
                c.process = None
        self.phase = "stopped"
        self.write_state()
