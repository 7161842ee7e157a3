import pytest

from trading_lib.settings import DEFAULT_SCHEDULE, ENVIRONMENT_VARIABLES, SettingsError, load_settings


def test_defaults_work_on_a_bare_machine():
    settings = load_settings({})
    assert settings.execution_mode == "local"
    assert settings.aws_conn_id == "aws_default"
    assert settings.orchestrator_schedule == DEFAULT_SCHEDULE
    assert not settings.is_s3
    assert settings.data_root  # the project folder or the cwd


def test_s3_root_and_trailing_slash():
    settings = load_settings({"TRADING_DATA_ROOT": "s3://bucket/prefix/"})
    assert settings.is_s3
    assert settings.data_root == "s3://bucket/prefix"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"TRADING_EXECUTION_MODE": "docker"}, "TRADING_EXECUTION_MODE"),
        ({"TRADING_DATA_ROOT": "gs://bucket"}, "TRADING_DATA_ROOT"),
        ({"TRADING_DATA_ROOT": "s3://"}, "TRADING_DATA_ROOT"),
        ({"TRADING_K8S_IMAGE_PULL_POLICY": "Sometimes"}, "TRADING_K8S_IMAGE_PULL_POLICY"),
        ({"TRADING_K8S_STARTUP_TIMEOUT": "soon"}, "TRADING_K8S_STARTUP_TIMEOUT"),
        ({"TRADING_K8S_STARTUP_TIMEOUT": "-5"}, "TRADING_K8S_STARTUP_TIMEOUT"),
        ({"TRADING_PARTITIONS_PER_TASK": "0"}, "TRADING_PARTITIONS_PER_TASK"),
        ({"TRADING_PARTITIONS_PER_TASK": "many"}, "TRADING_PARTITIONS_PER_TASK"),
    ],
)
def test_bad_values_name_the_variable(env, field):
    with pytest.raises(SettingsError, match=field):
        load_settings(env)


def test_schedule_can_be_switched_off():
    assert load_settings({"TRADING_ORCHESTRATOR_SCHEDULE": "none"}).orchestrator_schedule is None


def test_kubernetes_settings_are_read():
    settings = load_settings(
        {
            "TRADING_EXECUTION_MODE": "kubernetes",
            "TRADING_K8S_NAMESPACE": "trading",
            "TRADING_K8S_MEMORY_LIMIT": "2Gi",
            "TRADING_K8S_S3_SECRET": "trading-s3",
            "TRADING_K8S_STARTUP_TIMEOUT": "60",
        }
    )
    assert settings.execution_mode == "kubernetes"
    assert settings.kubernetes.namespace == "trading"
    assert settings.kubernetes.memory_limit == "2Gi"
    assert settings.kubernetes.s3_secret == "trading-s3"
    assert settings.kubernetes.startup_timeout_seconds == 60


def test_every_documented_variable_is_read():
    source = open(load_settings.__code__.co_filename).read()
    for name in ENVIRONMENT_VARIABLES:
        assert source.count(f'"{name}"') >= 2, f"{name} is documented but never read"
