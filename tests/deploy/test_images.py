"""The two images, checked statically (no Docker engine runs here): Dockerfile (Airflow) and
docker/task-image.Dockerfile (KubernetesPodOperator partitions), and the task image's pins."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trading_airflow.kubernetes_pods import PARTITION_COMMAND, TASK_IMAGE_UID

PROJECT = Path(__file__).resolve().parents[2]
AIRFLOW_DOCKERFILE = PROJECT / "Dockerfile"
TASK_DOCKERFILE = PROJECT / "docker" / "task-image.Dockerfile"
TASK_REQUIREMENTS_IN = PROJECT / "requirements-task.in"
TASK_REQUIREMENTS = PROJECT / "requirements-task.txt"
REQUIREMENTS = PROJECT / "requirements.txt"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cmake", "python3-dev", "libc6-dev")
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
}  # fmt: skip


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in INSTRUCTIONS, f"{path.name}: unknown instruction {keyword!r}"
        arguments = arguments.strip()
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=expand(words[0], global_args), name=name))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before the first FROM"
            arg_name, _, default = arguments.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append((keyword, arguments))
    assert stages, f"{path.name} has no FROM"
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), value)


def copy_sources(stage: Stage) -> list[str]:
    sources = []
    for arguments in stage.args("COPY"):
        if "--from=" in arguments:
            continue
        words = [w for w in shlex.split(arguments) if not w.startswith("--")]
        sources += words[:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (PROJECT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def task_image() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(TASK_DOCKERFILE)


@pytest.fixture(scope="module")
def airflow_image() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(AIRFLOW_DOCKERFILE)


def test_airflow_image_extends_the_official_image_of_the_pinned_version(airflow_image):
    _, stages = airflow_image
    airflow_pin = read_pins(REQUIREMENTS)["apache-airflow"]

    assert [stage.base for stage in stages] == [f"apache/airflow:{airflow_pin}-python3.11"]
    [install_requirements, install_trading_lib] = stages[0].args("RUN")
    assert f'"apache-airflow=={airflow_pin}"' in install_requirements
    assert "requirements.txt" in install_requirements
    assert "--no-deps /opt/trading-lib" in install_trading_lib


def test_task_image_is_multi_stage_on_slim_python_311(task_image):
    _, stages = task_image

    assert len(stages) >= 2
    assert all(stage.base.startswith("python:3.11-slim") for stage in stages)
    assert stages[-1].base == stages[0].base, "the venv is copied between stages: same Python required"


def test_task_image_runs_as_the_pods_non_root_user(task_image):
    _, stages = task_image
    final = stages[-1]

    [user] = final.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "runAsNonRoot can only verify a numeric USER"
    assert int(uid) == TASK_IMAGE_UID != 0
    assert gid and int(gid) != 0
    assert f"--uid {uid}" in " ".join(final.args("RUN"))
    # USER comes after the last RUN: nothing after it runs as root.
    keywords = [keyword for keyword, _ in final.instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_task_image_entry_point_is_the_partition_command(task_image):
    _, stages = task_image

    [entrypoint] = stages[-1].args("ENTRYPOINT")
    assert json.loads(entrypoint) == PARTITION_COMMAND


def test_no_build_tools_in_the_task_image_final_stage(task_image):
    _, stages = task_image
    final = stages[-1]

    for command in final.args("RUN"):
        words = set(re.split(r"[\s;&|]+", command))
        assert not words & set(BUILD_TOOLS), f"final stage installs build tools: {command}"
    copied = [a for a in final.args("COPY") if "--from=" in a]
    assert copied and all(shlex.split(a)[-2] == "/opt/venv" for a in copied), copied
    # The builder does need a compiler: it is where it belongs.
    assert any("build-essential" in command for command in stages[0].args("RUN"))


def test_task_image_installs_the_pinned_task_requirements_without_resolving(task_image):
    _, stages = task_image
    runs = " ".join(stages[0].args("RUN"))

    assert "requirements-task.txt" in " ".join(copy_sources(stages[0]))
    assert "--no-deps -r /build/requirements-task.txt" in runs
    assert "pip check" in runs


@pytest.mark.parametrize("dockerfile", [AIRFLOW_DOCKERFILE, TASK_DOCKERFILE], ids=lambda p: p.name)
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    _, stages = parse_dockerfile(dockerfile)
    sources = [source for stage in stages for source in copy_sources(stage)]
    ignored = dockerignore_patterns()

    assert sources
    for source in sources:
        assert (PROJECT / source).exists(), f"{dockerfile.name}: COPY source {source} is missing"
        top = source.rstrip("/").split("/")[0]
        assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), (
            f"{dockerfile.name}: COPY source {source} is excluded by .dockerignore"
        )


def test_task_requirements_pin_every_line_and_leave_airflow_out():
    lines = [line.split("#", 1)[0].strip() for line in TASK_REQUIREMENTS.read_text().splitlines()]
    requirements = [line for line in lines if line]

    assert requirements
    unpinned = [
        line for line in requirements if not re.fullmatch(r"[A-Za-z0-9._\-\[\],]+==[A-Za-z0-9.+!\-]+", line)
    ]
    assert unpinned == []
    assert not [line for line in requirements if "airflow" in line.lower()]


def test_task_requirements_cover_the_direct_needs():
    pins = read_pins(TASK_REQUIREMENTS)
    lines = [line.split("#", 1)[0].strip() for line in TASK_REQUIREMENTS_IN.read_text().splitlines()]

    direct_names = {normalize(re.split(r"[<>=!~\[ ;]", line)[0]) for line in lines if line}
    assert {"numpy", "pandas", "pyarrow", "fsspec", "s3fs", "exchange-calendars", "yfinance"} <= direct_names
    assert direct_names <= set(pins)


def test_task_requirements_match_the_airflow_image_versions():
    task_pins, airflow_pins = read_pins(TASK_REQUIREMENTS), read_pins(REQUIREMENTS)

    missing = sorted(set(task_pins) - set(airflow_pins))
    different = {
        name: (v, airflow_pins[name]) for name, v in task_pins.items() if airflow_pins.get(name, v) != v
    }
    assert missing == [], "compiled with -c requirements.txt, every task pin is in requirements.txt"
    assert different == {}
