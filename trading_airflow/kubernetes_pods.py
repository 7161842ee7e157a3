"""KubernetesPodOperator settings of the partition pods (``TRADING_EXECUTION_MODE=kubernetes``).

Usage in a DAG (one pod per mapped instance)::

    KubernetesPodOperator.partial(task_id=..., **partition_pod_kwargs(SETTINGS)).expand_kwargs(
        [partition_pod_mapping(contract, chunk) for chunk in chunks]
    )

Imported at parse time: the operator and the kubernetes client are imported inside the functions
(importing the KubernetesPodOperator costs seconds in a cold Python).

The pod runs ``python -m trading_lib analyze-partition ...`` in the task image
(docker/task-image.Dockerfile). It reads and writes only the data root (S3, credentials from the
AWS_* keys of the secret ``settings.kubernetes.s3_secret``), so its root filesystem is read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trading_lib.layout import parse_partition_timestamp
from trading_lib.settings import Settings
from trading_lib.symbols import validate_symbol

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

PARTITION_COMMAND = ["python", "-m", "trading_lib"]
PARTITION_SUBCOMMAND = "analyze-partition"

# The task image's user (docker/task-image.Dockerfile creates it with this uid/gid).
TASK_IMAGE_UID = 10001
TASK_IMAGE_GID = 10001

APP_LABEL = "trading-pipeline"
COMPONENT_LABEL = "partition"
CONTRACT_LABEL = "trading/contract"
TIMESTAMP_LABEL = "trading/timestamp"
PARTITIONS_LABEL = "trading/partitions"

# A pod that has not finished after this long is stuck (a partition takes seconds): Kubernetes
# kills it even if the Airflow worker watching it is gone, and the task's retries take over.
ACTIVE_DEADLINE_SECONDS = 3600


def partition_pod_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``KubernetesPodOperator.partial()`` shared by every partition pod.

    Labels are not here: mapped kwargs may not repeat a partial kwarg (``expand_kwargs`` raises
    TypeError), so :func:`partition_pod_mapping` returns the full label set of each pod.
    """
    from kubernetes.client import models as k8s

    pods = settings.kubernetes
    env_from = []
    if pods.s3_secret:
        env_from.append(k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=pods.s3_secret)))
    return {
        "namespace": pods.namespace,
        "image": settings.task_image,
        "image_pull_policy": pods.image_pull_policy,
        "cmds": list(PARTITION_COMMAND),
        "env_vars": [k8s.V1EnvVar(name="TRADING_DATA_ROOT", value=settings.data_root)],
        "env_from": env_from,
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": pods.cpu_request, "memory": pods.memory_request},
            limits={"cpu": pods.cpu_limit, "memory": pods.memory_limit},
        ),
        "service_account_name": pods.service_account,
        # The pod never calls the Kubernetes API: no token in it.
        "automount_service_account_token": False,
        "security_context": _pod_security_context(k8s),
        "container_security_context": _container_security_context(k8s),
        # Python libraries may want a scratch folder; the root filesystem is read-only.
        "volumes": [k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="256Mi"))],
        "volume_mounts": [k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
        "startup_timeout_seconds": pods.startup_timeout_seconds,
        "active_deadline_seconds": ACTIVE_DEADLINE_SECONDS,
        "get_logs": True,
        "log_events_on_failure": True,
        "do_xcom_push": False,
        "deferrable": True,
        # Failed pods stay for `kubectl logs/describe`; retries create new pods (random name suffix).
        "on_finish_action": "delete_succeeded_pod",
    }


def partition_pod_mapping(contract: str, timestamps: list[str]) -> dict[str, Any]:
    """Per mapped instance kwargs (for ``.expand_kwargs()``): the CLI arguments and the pod's labels.

    ``timestamps`` is one chunk of partition labels (ISO 8601); the labels name its first bar and
    its size, since a label value cannot hold a list.
    """
    contract = validate_symbol(contract)
    if isinstance(timestamps, str) or not timestamps:
        raise ValueError(f"timestamps={timestamps!r}: expected a non-empty list of ISO 8601 date-times")
    arguments = [PARTITION_SUBCOMMAND, "--contract", contract]
    for timestamp in timestamps:
        arguments += ["--timestamp", str(timestamp)]
    labels = {
        "app": APP_LABEL,
        "component": COMPONENT_LABEL,
        CONTRACT_LABEL: contract_label_value(contract),
        # a label value allows no ':' or '+': the bar start in exchange time as YYYYMMDD_HHMMSS
        TIMESTAMP_LABEL: parse_partition_timestamp(timestamps[0]).strftime("%Y%m%d_%H%M%S"),
        PARTITIONS_LABEL: str(len(timestamps)),
    }
    return {"arguments": arguments, "labels": labels}


def contract_label_value(contract: str) -> str:
    """A Kubernetes label value naming ``contract``: '^VIX' -> 'idx_VIX', 'EURUSD=X' -> 'EURUSD_eq_X'.

    Valid symbols are upper case without '_', so the lower-case markers cannot collide; a symbol
    starts and ends alphanumeric and has at most 20 characters, so the value is a valid label.
    """
    symbol = validate_symbol(contract)
    return symbol.replace("^", "idx_", 1).replace("=", "_eq_")


def _pod_security_context(k8s) -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=TASK_IMAGE_UID,
        run_as_group=TASK_IMAGE_GID,
        fs_group=TASK_IMAGE_GID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _container_security_context(k8s) -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )
