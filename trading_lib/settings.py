"""The one place that reads the pipeline's configuration from the environment.

Every default works on a bare machine: data under the project folder, local execution.
Deployments (docker-compose, the task image, Helm values) set these same variables; a test
checks that every ``TRADING_*`` variable they set is one this module reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trading_lib.errors import BadInputError
from trading_lib.layout import EXCHANGE_TZ
from trading_lib.symbols import DEFAULT_SYMBOLS, SymbolError, validate_symbols

EXECUTION_MODES = ("local", "kubernetes")

# Every variable this module reads, with its meaning. Deployment files are checked against it.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "TRADING_DATA_ROOT": "where bars/ and output/ live: a local folder or s3://bucket/prefix",
    "TRADING_AWS_CONN_ID": "Airflow connection used for s3:// data roots (DAG side)",
    "TRADING_EXECUTION_MODE": "local (partitions run in the Airflow worker) or kubernetes (one pod each)",
    "TRADING_ORCHESTRATOR_SCHEDULE": "'exchange' (default: one run per bar of the exchange's sessions), "
    "a cron (America/New_York; an interval without a bar is skipped), or 'none' for manual runs only",
    "TRADING_ORCHESTRATOR_DEADLINE_MINUTES": "minutes after its bar closed (manual runs: after it was "
    "queued; backfill runs: none) when an unfinished trading_orchestrator run is late (default 20; "
    "'none': off)",
    "TRADING_ORCHESTRATOR_START_DATE": "first data interval of the schedule, YYYY-MM-DD (default 2024-01-01)",
    "TRADING_ORCHESTRATOR_END_DATE": "last day of the schedule, YYYY-MM-DD (default: none)",
    "TRADING_ORCHESTRATOR_CATCHUP": "true: the scheduler also runs the intervals missed since the start date",
    "TRADING_SYMBOLS": "stocks a run ingests when its conf names none, comma-separated",
    "TRADING_PARTITIONS_PER_TASK": "partitions per mapped analyze_partition instance (default 1; more when a "
    "run has more bars than [core] max_map_length)",
    "TRADING_YAHOO_ENDPOINT": "send Yahoo requests to this http://host:port (a mirror; the tests' replay)",
    "TRADING_TASK_IMAGE": "image of the KubernetesPodOperator partitions",
    "TRADING_K8S_NAMESPACE": "namespace of partition pods",
    "TRADING_K8S_SERVICE_ACCOUNT": "service account of partition pods",
    "TRADING_K8S_IMAGE_PULL_POLICY": "IfNotPresent, Always or Never",
    "TRADING_K8S_CPU_REQUEST": "CPU request of a partition pod",
    "TRADING_K8S_CPU_LIMIT": "CPU limit of a partition pod",
    "TRADING_K8S_MEMORY_REQUEST": "memory request of a partition pod",
    "TRADING_K8S_MEMORY_LIMIT": "memory limit of a partition pod",
    "TRADING_K8S_S3_SECRET": "Kubernetes secret whose keys become the pod's AWS_* environment",
    "TRADING_K8S_STARTUP_TIMEOUT": "seconds a partition pod may take to start",
}

DEFAULT_START_DATE = "2024-01-01"
EXCHANGE_SCHEDULE = "exchange"  # trading_airflow.timetables.ExchangeBarTimetable: one run per bar close
DEFAULT_SCHEDULE = EXCHANGE_SCHEDULE
DEFAULT_DEADLINE_MINUTES = 20
SCHEDULE_TIMEZONE = EXCHANGE_TZ  # schedules follow the exchange's clock


class SettingsError(BadInputError):
    """A configuration variable holds a value the pipeline cannot use; the message names it."""


def _default_data_root() -> str:
    # A source checkout (editable install) keeps its data beside the code, as the original design
    # did (input/*.parquet next to input/generate_hourly_data.py); an installed package uses the cwd.
    project = Path(__file__).resolve().parent.parent
    if (project / "pyproject.toml").is_file():
        return str(project)
    return str(Path.cwd())


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be a positive integer")
    return value


def _symbols(env: dict[str, str]) -> tuple[str, ...]:
    raw = env.get("TRADING_SYMBOLS", "").strip()
    if not raw:
        return DEFAULT_SYMBOLS
    try:
        return tuple(validate_symbols([s.strip() for s in raw.split(",") if s.strip()]))
    except SymbolError as exc:
        raise SettingsError(f"TRADING_SYMBOLS={raw!r}: {exc}") from None


def _date(env: dict[str, str], name: str) -> str | None:
    import re

    raw = env.get(name, "").strip()
    if raw and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise SettingsError(f"{name}={raw!r}: expected a date YYYY-MM-DD")
    return raw or None


@dataclass(frozen=True)
class KubernetesSettings:
    namespace: str = "default"
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    s3_secret: str | None = None
    startup_timeout_seconds: int = 300


@dataclass(frozen=True)
class Settings:
    data_root: str
    aws_conn_id: str = "aws_default"
    execution_mode: str = "local"
    orchestrator_schedule: str | None = DEFAULT_SCHEDULE
    orchestrator_start_date: str = DEFAULT_START_DATE
    orchestrator_end_date: str | None = None
    orchestrator_catchup: bool = False
    orchestrator_deadline_minutes: int | None = DEFAULT_DEADLINE_MINUTES  # None: no deadline alert
    yahoo_endpoint: str | None = None
    partitions_per_task: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    task_image: str = "trading-pipeline:latest"
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)

    @property
    def is_s3(self) -> bool:
        return self.data_root.startswith("s3://")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (the process environment by default)."""
    env = dict(os.environ if environ is None else environ)

    data_root = env.get("TRADING_DATA_ROOT", "").strip() or _default_data_root()
    if "://" in data_root and not data_root.startswith(("s3://", "file://")):
        raise SettingsError(f"TRADING_DATA_ROOT={data_root!r}: only local paths and s3:// are supported")
    if data_root.startswith("file://"):
        data_root = data_root.removeprefix("file://")
    if data_root.startswith("s3://") and len(data_root.removeprefix("s3://").strip("/")) == 0:
        raise SettingsError("TRADING_DATA_ROOT='s3://' needs a bucket name")
    data_root = data_root.rstrip("/") or "/"

    mode = env.get("TRADING_EXECUTION_MODE", "local").strip().lower() or "local"
    if mode not in EXECUTION_MODES:
        raise SettingsError(f"TRADING_EXECUTION_MODE={mode!r}: expected one of {', '.join(EXECUTION_MODES)}")

    schedule = env.get("TRADING_ORCHESTRATOR_SCHEDULE", DEFAULT_SCHEDULE).strip()
    pull_policy = env.get("TRADING_K8S_IMAGE_PULL_POLICY", "IfNotPresent").strip()
    if pull_policy not in ("IfNotPresent", "Always", "Never"):
        raise SettingsError(
            f"TRADING_K8S_IMAGE_PULL_POLICY={pull_policy!r}: expected IfNotPresent, Always or Never"
        )

    kubernetes = KubernetesSettings(
        namespace=env.get("TRADING_K8S_NAMESPACE", "").strip() or "default",
        service_account=env.get("TRADING_K8S_SERVICE_ACCOUNT", "").strip() or None,
        image_pull_policy=pull_policy,
        cpu_request=env.get("TRADING_K8S_CPU_REQUEST", "").strip() or "250m",
        cpu_limit=env.get("TRADING_K8S_CPU_LIMIT", "").strip() or "1",
        memory_request=env.get("TRADING_K8S_MEMORY_REQUEST", "").strip() or "512Mi",
        memory_limit=env.get("TRADING_K8S_MEMORY_LIMIT", "").strip() or "1Gi",
        s3_secret=env.get("TRADING_K8S_S3_SECRET", "").strip() or None,
        startup_timeout_seconds=_positive_int(env, "TRADING_K8S_STARTUP_TIMEOUT", 300),
    )
    start_date = _date(env, "TRADING_ORCHESTRATOR_START_DATE") or DEFAULT_START_DATE
    end_date = _date(env, "TRADING_ORCHESTRATOR_END_DATE")
    catchup = env.get("TRADING_ORCHESTRATOR_CATCHUP", "").strip().lower()
    if catchup not in ("", "true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"TRADING_ORCHESTRATOR_CATCHUP={catchup!r}: expected true or false")
    deadline = env.get("TRADING_ORCHESTRATOR_DEADLINE_MINUTES", "").strip()
    return Settings(
        data_root=data_root,
        orchestrator_deadline_minutes=(
            None
            if deadline.lower() in ("none", "null")
            else _positive_int(env, "TRADING_ORCHESTRATOR_DEADLINE_MINUTES", DEFAULT_DEADLINE_MINUTES)
        ),
        orchestrator_start_date=start_date,
        orchestrator_end_date=end_date,
        orchestrator_catchup=catchup in ("true", "1", "yes"),
        yahoo_endpoint=env.get("TRADING_YAHOO_ENDPOINT", "").strip() or None,
        partitions_per_task=_positive_int(env, "TRADING_PARTITIONS_PER_TASK", 1),
        symbols=_symbols(env),
        aws_conn_id=env.get("TRADING_AWS_CONN_ID", "").strip() or "aws_default",
        execution_mode=mode,
        orchestrator_schedule=None if schedule.lower() in ("", "none", "null") else schedule,
        task_image=env.get("TRADING_TASK_IMAGE", "").strip() or "trading-pipeline:latest",
        kubernetes=kubernetes,
    )
