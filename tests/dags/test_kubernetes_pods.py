"""The partition pods of kubernetes mode (trading_airflow/kubernetes_pods.py).

No Kubernetes cluster can run here, so the pod is rendered, not run: a KubernetesPodOperator is
built for one mapped instance exactly as the scheduler does (``partial()`` + ``expand_kwargs()``,
then ``unmap()`` with that instance's kwargs), its pod request is rendered with
``build_pod_request_obj(dry_run=True)`` and checked against the Kubernetes API models (serialised
with the official client and deserialised back into a V1Pod, which validates required fields) and
against the OpenAPI schema of the targeted Kubernetes release, strict about unknown fields
(kubernetes-validate, tests/_kubernetes_schema.py).
The rendered command and arguments are then run locally and must write the same bytes as local mode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
import yaml
from _kubernetes_schema import KUBERNETES_VERSION, validate_strictly

from trading_lib.layout import PartitionKeyError, parse_partition_timestamp, result_key
from trading_lib.settings import load_settings
from trading_lib.symbols import SymbolError

PROJECT = Path(__file__).resolve().parents[2]
DAGS = PROJECT / "dags"

S3_SETTINGS_ENV = {
    "TRADING_DATA_ROOT": "s3://trading-data/pipeline",
    "TRADING_EXECUTION_MODE": "kubernetes",
    "TRADING_TASK_IMAGE": "registry.example.com/trading-task:1.2.3",
    "TRADING_K8S_NAMESPACE": "trading",
    "TRADING_K8S_SERVICE_ACCOUNT": "trading-partitions",
    "TRADING_K8S_IMAGE_PULL_POLICY": "Always",
    "TRADING_K8S_CPU_REQUEST": "500m",
    "TRADING_K8S_CPU_LIMIT": "2",
    "TRADING_K8S_MEMORY_REQUEST": "768Mi",
    "TRADING_K8S_MEMORY_LIMIT": "2Gi",
    "TRADING_K8S_S3_SECRET": "trading-s3-credentials",
    "TRADING_K8S_STARTUP_TIMEOUT": "120",
}
TIMESTAMPS = ["2024-01-02T09:30:00-05:00", "2024-01-02T10:30:00-05:00"]


def helm_values_settings_env() -> dict[str, str]:
    """The TRADING_* settings deploy/helm/values.yaml gives every Airflow component."""
    values = yaml.safe_load((PROJECT / "deploy" / "helm" / "values.yaml").read_text())
    return {item["name"]: str(item["value"]) for item in values["env"] if item["name"].startswith("TRADING_")}


# Settings the partition pod is rendered with for schema validation.
POD_SETTINGS_ENV = {
    "s3-secret": S3_SETTINGS_ENV,
    # cloud IAM instead of keys: no envFrom
    "no-s3-secret": {k: v for k, v in S3_SETTINGS_ENV.items() if k != "TRADING_K8S_S3_SECRET"},
    # every TRADING_K8S_* left to its default: namespace "default", no service account
    "defaults": {"TRADING_DATA_ROOT": "s3://trading-data/pipeline", "TRADING_EXECUTION_MODE": "kubernetes"},
    "helm-values": helm_values_settings_env(),
}

# Kubernetes label syntax (apimachinery validation): value <= 63 chars, alphanumeric at both ends;
# key = optional DNS-subdomain prefix + '/' + a name with the value's rules (non-empty).
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?)?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9\-.]{0,251}[a-z0-9])?$")
SECRET_LOOKING_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def kubernetes_pods():
    import trading_airflow.kubernetes_pods as module

    return module


def build_mapped_instance(kubernetes_pods, settings, contract: str, timestamps: list[str]):
    """The operator the scheduler builds for one mapped instance of analyze_partition."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    mapping = kubernetes_pods.partition_pod_mapping(contract, timestamps)
    from trading_airflow.runtime import PARTITION_TASK_ARGS

    with DAG("render_partition_pod", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        mapped = KubernetesPodOperator.partial(
            **PARTITION_TASK_ARGS, **kubernetes_pods.partition_pod_kwargs(settings)
        ).expand_kwargs([mapping])
    # unmap() refuses a mapped kwarg that repeats a partial one, as the scheduler would.
    return mapped.unmap(mapping)


def render_pod(kubernetes_pods, settings, contract: str = "AAPL", timestamps: list[str] = TIMESTAMPS):
    """Render the pod and round-trip it through the Kubernetes API models."""
    from kubernetes.client import ApiClient, V1Pod

    operator = build_mapped_instance(kubernetes_pods, settings, contract, timestamps)
    request = operator.build_pod_request_obj(dry_run=True)
    client = ApiClient()
    manifest = client.sanitize_for_serialization(request)

    class _Response:  # ApiClient.deserialize reads an HTTP response's .data
        data = json.dumps(manifest)

    pod = client.deserialize(_Response(), "V1Pod")
    assert isinstance(pod, V1Pod)
    return manifest, pod


@pytest.fixture(scope="module")
def s3_settings():
    return load_settings(S3_SETTINGS_ENV)


def test_rendered_pod_is_a_valid_v1_pod(kubernetes_pods, s3_settings):
    manifest, pod = render_pod(kubernetes_pods, s3_settings)

    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Pod"
    assert pod.metadata.name and DNS_SUBDOMAIN.fullmatch(pod.metadata.name)
    assert pod.metadata.namespace == "trading"
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.service_account_name == "trading-partitions"
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.active_deadline_seconds > 0
    [container] = pod.spec.containers
    assert container.name == "base"
    assert container.image == "registry.example.com/trading-task:1.2.3"
    assert container.image_pull_policy == "Always"


def test_command_and_arguments_name_every_timestamp(kubernetes_pods, s3_settings):
    _, pod = render_pod(kubernetes_pods, s3_settings, contract="msft", timestamps=TIMESTAMPS)
    [container] = pod.spec.containers

    assert container.command == ["python", "-m", "trading_lib"] == kubernetes_pods.PARTITION_COMMAND
    assert container.args == [
        "analyze-partition",
        "--contract",
        "MSFT",
        "--timestamp",
        TIMESTAMPS[0],
        "--timestamp",
        TIMESTAMPS[1],
    ]


def test_resources_come_from_the_settings(kubernetes_pods, s3_settings):
    _, pod = render_pod(kubernetes_pods, s3_settings)
    resources = pod.spec.containers[0].resources

    assert resources.requests == {"cpu": "500m", "memory": "768Mi"}
    assert resources.limits == {"cpu": "2", "memory": "2Gi"}


def test_environment_has_the_data_root_and_credentials_only_by_secret_reference(kubernetes_pods, s3_settings):
    _, pod = render_pod(kubernetes_pods, s3_settings)
    [container] = pod.spec.containers

    env = {item.name: item.value for item in container.env}
    assert env["TRADING_DATA_ROOT"] == "s3://trading-data/pipeline"
    literal_secrets = [name for name, value in env.items() if SECRET_LOOKING_NAME.search(name) and value]
    assert literal_secrets == []
    assert [source.secret_ref.name for source in container.env_from] == ["trading-s3-credentials"]
    assert all(source.config_map_ref is None for source in container.env_from)


def test_without_an_s3_secret_the_pod_has_no_env_from(kubernetes_pods):
    settings = load_settings({k: v for k, v in S3_SETTINGS_ENV.items() if k != "TRADING_K8S_S3_SECRET"})
    _, pod = render_pod(kubernetes_pods, settings)

    assert not pod.spec.containers[0].env_from


def test_pod_runs_as_non_root_without_privileges(kubernetes_pods, s3_settings):
    _, pod = render_pod(kubernetes_pods, s3_settings)
    pod_context = pod.spec.security_context
    container_context = pod.spec.containers[0].security_context

    assert pod_context.run_as_non_root is True
    assert pod_context.run_as_user == kubernetes_pods.TASK_IMAGE_UID != 0
    assert pod_context.seccomp_profile.type == "RuntimeDefault"
    assert container_context.run_as_non_root is True
    assert container_context.allow_privilege_escalation is False
    assert container_context.privileged is False
    assert container_context.read_only_root_filesystem is True
    assert container_context.capabilities.drop == ["ALL"]
    # The read-only root filesystem leaves /tmp writable through an emptyDir.
    [mount] = pod.spec.containers[0].volume_mounts
    [volume] = pod.spec.volumes
    assert (mount.mount_path, mount.name) == ("/tmp", volume.name)
    assert volume.empty_dir is not None


@pytest.mark.parametrize(
    "contract", ["AAPL", "^VIX", "^GSPC", "BRK-B", "BF.B", "EURUSD=X", "ABCDEFGHIJ.KLMNOPQRS"]
)
def test_labels_are_valid_kubernetes_labels(kubernetes_pods, s3_settings, contract):
    _, pod = render_pod(kubernetes_pods, s3_settings, contract=contract, timestamps=TIMESTAMPS[:1])
    labels = pod.metadata.labels

    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert LABEL_NAME.fullmatch(name), key
        assert not prefix or DNS_SUBDOMAIN.fullmatch(prefix), key
        assert LABEL_VALUE.fullmatch(value), f"{key}={value!r}"
    assert labels["app"] == "trading-pipeline"
    assert labels["component"] == "partition"
    assert labels["trading/timestamp"] == "20240102_093000"
    assert labels["trading/partitions"] == "1"


@pytest.mark.parametrize("contract", ["AAPL", "^VIX", "EURUSD=X", "ABCDEFGHIJ.KLMNOPQRS"])
@pytest.mark.parametrize("settings_name", sorted(POD_SETTINGS_ENV))
def test_rendered_pod_validates_strictly_against_the_kubernetes_schema(
    kubernetes_pods, settings_name, contract
):
    settings = load_settings(POD_SETTINGS_ENV[settings_name])
    manifest, _ = render_pod(kubernetes_pods, settings, contract=contract, timestamps=TIMESTAMPS)

    validate_strictly(manifest)
    # the variants render different pods: the secret reference is there exactly when configured
    [container] = manifest["spec"]["containers"]
    assert bool(container.get("envFrom")) == bool(settings.kubernetes.s3_secret)


@pytest.mark.parametrize(
    "path, field, value",
    [
        (("spec", "containers", 0), "imagePullPolicyy", "Always"),
        (("spec", "containers", 0, "securityContext"), "readOnlyRootFileSystem", True),
        (("spec",), "serviceAccount_name", "trading-partitions"),
        (("metadata",), "label", {"app": "trading-pipeline"}),
        # a known field of the wrong type is refused too
        (("spec",), "activeDeadlineSeconds", "3600"),
    ],
    ids=["container", "securityContext", "spec", "metadata", "wrong-type"],
)
def test_schema_validation_refuses_an_unknown_field_or_a_wrong_type(
    kubernetes_pods, s3_settings, path, field, value
):
    import kubernetes_validate

    manifest, _ = render_pod(kubernetes_pods, s3_settings)
    validate_strictly(manifest)
    target = manifest
    for key in path:
        target = target[key]
    target[field] = value

    with pytest.raises(kubernetes_validate.ValidationError) as refused:
        validate_strictly(manifest)
    assert refused.value.version == KUBERNETES_VERSION
    assert field in refused.value.message or repr(value) in refused.value.message


def test_contract_labels_of_different_symbols_differ(kubernetes_pods):
    symbols = ["^VIX", "VIX", "EURUSD=X", "EURUSD-X", "BF.B", "BF-B"]

    values = [kubernetes_pods.contract_label_value(symbol) for symbol in symbols]

    assert len(set(values)) == len(symbols)
    assert kubernetes_pods.contract_label_value("^VIX") == "idx_VIX"


def test_bad_mapping_input_is_refused_naming_it(kubernetes_pods):
    with pytest.raises(SymbolError, match="AA PL"):
        kubernetes_pods.partition_pod_mapping("AA PL", TIMESTAMPS)
    with pytest.raises(ValueError, match="timestamps"):
        kubernetes_pods.partition_pod_mapping("AAPL", [])
    with pytest.raises(PartitionKeyError, match="yesterday"):
        kubernetes_pods.partition_pod_mapping("AAPL", ["yesterday"])


def test_module_import_loads_neither_the_operator_nor_the_kubernetes_client():
    code = (
        "import sys, trading_airflow.kubernetes_pods; "
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('airflow.providers.cncf')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_rendered_command_writes_the_same_bytes_as_local_mode(kubernetes_pods, tmp_path):
    # The partition code path lands in these modules; until they exist there is nothing to run.
    pytest.importorskip("trading_lib.sample_data")
    pytest.importorskip("trading_lib.analytics")
    from trading_lib import pipeline
    from trading_lib.storage import Storage

    pod_root, local_root = tmp_path / "pod-data-root", tmp_path / "local-data-root"
    subprocess.run(
        [sys.executable, "-m", "trading_lib", "--data-root", str(pod_root), "generate", "--contracts", "2"],
        check=True,
        capture_output=True,
    )
    shutil.copytree(pod_root, local_root)
    window = pipeline.resolve_window(Storage(str(local_root)))
    contract = pipeline.select_contracts(Storage(str(local_root)), 1, window)[0]
    timestamps = pipeline.list_partitions(Storage(str(local_root)), contract, window=window)[:2]

    # The pod's settings with a local data root: the pod spec is the same, only the root differs.
    settings = load_settings({**S3_SETTINGS_ENV, "TRADING_DATA_ROOT": str(pod_root)})
    _, pod = render_pod(kubernetes_pods, settings, contract=contract, timestamps=timestamps)
    [container] = pod.spec.containers
    pod_env = {item.name: item.value for item in container.env}
    # "python" in the image is the interpreter that has trading_lib: here, this test's interpreter.
    command = [sys.executable, *container.command[1:], *container.args]
    result = subprocess.run(
        command,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **pod_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

    written = pipeline.analyze_partition(Storage(str(local_root)), contract, timestamps)
    assert [item["timestamp"] for item in written] == timestamps
    for timestamp in timestamps:
        key = result_key(contract, parse_partition_timestamp(timestamp))
        assert (pod_root / key).read_bytes() == (local_root / key).read_bytes(), key


# What analyze_symbol's partition task is, in a fresh interpreter of the given execution mode: the
# DAG file parsed as the dag-processor parses it, then serialised as the scheduler stores it.
PARTITION_TASK_SHAPE = """
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag({dag_file!r})
assert not bag.import_errors, bag.import_errors
dag = bag.dags["analyze_symbol"]
DagSerialization.to_dict(dag)
task = dag.get_task("analyze_partition")
hooks = {{name: getattr(task.partial_kwargs.get(name), "__qualname__", None)
         for name in ("pre_execute", "post_execute")}}
print(json.dumps({{
    "operator": task.operator_class.__name__ if hasattr(task, "operator_class") else type(task).__name__,
    "map_index_template": task.map_index_template,
    "hooks": hooks,
    "outlets": [getattr(outlet, "name", None) for outlet in task.partial_kwargs.get("outlets", [])],
    "downstream": sorted(task.downstream_task_ids),
}}))
"""


def test_both_execution_modes_name_and_announce_partitions_alike():
    """Local and kubernetes mode run different operators for the partition task, but name their
    instances with the same template and announce a reprocessed partition with the same hooks."""
    shapes = {}
    for mode in ("local", "kubernetes"):
        result = subprocess.run(
            [sys.executable, "-c", PARTITION_TASK_SHAPE.format(dag_file=str(DAGS / "analyze_symbol.py"))],
            env={**os.environ, **S3_SETTINGS_ENV, "TRADING_EXECUTION_MODE": mode},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        shapes[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    local, kubernetes = shapes["local"], shapes["kubernetes"]
    assert local.pop("operator") == "_PythonDecoratedOperator"
    assert kubernetes.pop("operator") == "KubernetesPodOperator"
    assert local == kubernetes
    assert local["map_index_template"] == "{{ partition_name }}"
    assert local["hooks"] == {
        "pre_execute": "name_partition_instance",
        "post_execute": "announce_reprocessed_partition",
    }
    assert local["outlets"] == ["trading_results_updates"]
