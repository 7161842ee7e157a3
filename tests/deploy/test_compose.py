"""docker-compose.yaml, checked statically (no Docker engine runs here): it parses, every file it
points at exists, services and profiles hang together, and the pipeline settings it sets are ones
trading_lib reads and accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from trading_lib.settings import ENVIRONMENT_VARIABLES, load_settings

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "docker-compose.yaml"
CELERY_ENV_FILE = PROJECT / "docker" / "celery.env"
# Every file a deployment sets variables in.
DEPLOYMENT_FILES = [
    COMPOSE_FILE,
    CELERY_ENV_FILE,
    PROJECT / "Dockerfile",
    PROJECT / "docker" / "task-image.Dockerfile",
    PROJECT / "deploy" / "helm" / "values.yaml",
    *sorted((PROJECT / "deploy" / "kubernetes").glob("*.yaml")),
]
AIRFLOW_COMPONENTS = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
CELERY_SERVICES = ["redis", "airflow-worker"]
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR-default}, $$)."""

    def substitute(match: re.Match) -> str:
        name, op, default = match["name"], match["op"], match["default"]
        if op == ":-":
            return environ.get(name) or default
        if op == "-":
            return environ.get(name, default)
        return environ.get(name, "")

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def read_env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def service_environment(service: dict, environ: dict[str, str] | None = None) -> dict[str, str]:
    return {
        key: interpolate(str(value), environ or {}) for key, value in service.get("environment", {}).items()
    }


def test_compose_defines_the_stack(services):
    expected = {"postgres", "seaweedfs", "s3-init", "airflow-init", *AIRFLOW_COMPONENTS, *CELERY_SERVICES}
    assert expected <= set(services)


def test_build_contexts_and_dockerfiles_exist(services):
    builds = {name: service["build"] for name, service in services.items() if "build" in service}
    assert builds, "no service builds the repository's image"
    for name, build in builds.items():
        context = PROJECT / build["context"]
        assert context.is_dir(), f"{name}: build context {build['context']} is missing"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"


def test_mounted_host_paths_exist(compose, services):
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (PROJECT / source).exists(), f"{name}: mounted {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} is not declared"


def test_referenced_files_exist(services):
    init = services["s3-init"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in init["volumes"]}
    script = init["entrypoint"][-1]
    assert script in mounted, "the s3-init script is not mounted into the container"
    assert (PROJECT / mounted[script]).is_file()
    assert CELERY_ENV_FILE.is_file()
    assert "docker/celery.env" in COMPOSE_FILE.read_text()


def test_depends_on_names_existing_services(services):
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name


def test_airflow_components_use_the_repository_image_and_wait_for_migrations(services):
    for name in [*AIRFLOW_COMPONENTS, "airflow-worker"]:
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_celery_profile_holds_redis_and_the_worker_only(services):
    in_celery = {name for name, service in services.items() if "celery" in service.get("profiles", [])}
    assert in_celery == set(CELERY_SERVICES)
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_executor_is_local_by_default_and_celery_with_the_env_file(services):
    scheduler = services["airflow-scheduler"]
    assert service_environment(scheduler)["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"

    celery_env = read_env_file(CELERY_ENV_FILE)
    assert service_environment(scheduler, celery_env)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert celery_env["COMPOSE_PROFILES"] == "celery"
    # Every component runs with the same executor (they share the environment anchor).
    executors = {
        service_environment(services[n], celery_env)["AIRFLOW__CORE__EXECUTOR"] for n in AIRFLOW_COMPONENTS
    }
    assert executors == {"CeleryExecutor"}


def test_execution_api_url_points_at_the_api_server(services):
    url = urlparse(
        service_environment(services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    )
    assert url.hostname in services
    assert f"{url.port}:{url.port}" in services[url.hostname]["ports"]
    assert url.path == "/execution/"


def test_aws_connection_reaches_seaweedfs_with_its_credentials(services):
    environment = service_environment(services["airflow-scheduler"])
    connection = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])

    assert connection["conn_type"] == "aws"
    endpoint = urlparse(connection["extra"]["endpoint_url"])
    assert endpoint.hostname == "seaweedfs" and endpoint.port == 8333
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")
    seaweed_env = service_environment(services["seaweedfs"])
    assert (connection["login"], connection["password"]) == (
        seaweed_env["AWS_ACCESS_KEY_ID"],
        seaweed_env["AWS_SECRET_ACCESS_KEY"],
    )
    init_env = service_environment(services["s3-init"])
    assert init_env["AWS_ENDPOINT_URL"] == connection["extra"]["endpoint_url"]
    assert init_env["AWS_ACCESS_KEY_ID"] == connection["login"]


def test_pipeline_settings_are_accepted_by_trading_lib(services):
    environment = service_environment(services["airflow-scheduler"])
    settings = load_settings({k: v for k, v in environment.items() if k.startswith("TRADING_")})

    assert settings.is_s3
    assert settings.aws_conn_id == "aws_default"
    assert f"AIRFLOW_CONN_{settings.aws_conn_id.upper()}" in environment
    assert settings.execution_mode == "local"


@pytest.mark.parametrize("path", DEPLOYMENT_FILES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_trading_variable_is_a_known_setting(path):
    assert path.is_file(), f"{path} is missing"
    names = set(re.findall(r"\bTRADING_[A-Z0-9_]+", path.read_text()))

    unknown = sorted(names - set(ENVIRONMENT_VARIABLES))
    assert unknown == [], f"{path.name} sets variables trading_lib does not read: {unknown}"
