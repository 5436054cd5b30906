"""Settings, docs and deployment files agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from collector import settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_env_example_with_its_default():
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert pairs == {s.name: s.default for s in settings.SETTINGS}


def test_every_setting_is_in_the_readme_table_with_its_default():
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (`[^`]*`|\(empty\)) \|", readme, re.M))
    expected = {s.name: f"`{s.default}`" if s.default else "(empty)" for s in settings.SETTINGS}
    assert rows == expected


def test_defaults_parse():
    values = settings.load({})
    assert values["MAX_REPORT_BYTES"] == 65536
    assert values["MINUTE_RETENTION"] == 48 * 3600 and values["HOUR_RETENTION"] == 90 * 86400


@pytest.mark.parametrize(
    "name, value",
    [("MAX_REPORT_BYTES", "64k"), ("MAX_REPORT_BYTES", "10"), ("DEDUP_WINDOW", "5 min"),
     ("HOUR_RETENTION", "1h"), ("REDIS_URL", "http://localhost"), ("PUBLIC_URL", "collector.example"),
     ("TRUSTED_PROXIES", "yes"), ("LOG_LEVEL", "LOUD"), ("WEB_CONCURRENCY", "0")],
)
def test_malformed_values_stop_start_up_naming_the_variable(name, value):
    with pytest.raises(settings.SettingsError) as raised:
        settings.load({name: value})
    assert name in str(raised.value)


def test_booleans_are_strict():
    assert settings.parse_bool("true") is True and settings.parse_bool("0") is False
    with pytest.raises(ValueError):
        settings.parse_bool("yes")


def test_durations():
    assert [settings.parse_duration(t) for t in ["90s", "5m", "4h", "90d", "30"]] == [
        90, 300, 14400, 90 * 86400, 30]
    assert settings.format_duration(172800) == "2d"


def test_compose_file_names_only_real_settings_and_a_healthy_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"redis", "web", "worker"}
    assert "--appendonly" in services["redis"]["command"]
    assert "healthcheck" in services["redis"]
    known = {s.name for s in settings.SETTINGS}
    assert set(services["web"]["environment"]) <= known
    assert set(services["worker"]["environment"]) <= known
    assert services["worker"]["command"] == ["staple-collector", "worker"]
    assert services["worker"]["environment"]["SECRET_KEY"] == services["web"]["environment"]["SECRET_KEY"]
    assert services["web"]["ports"] == ["8000:8000"]
    assert services["web"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["web"]["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_procfile_runs_gunicorn_on_the_factory():
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert "gunicorn" in procfile["web"] and "'collector:create_app()'" in procfile["web"]
    assert "collector.gunicorn_conf" in procfile["web"]
    assert procfile["worker"] == "staple-collector worker"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER collector" in dockerfile and "collector:create_app()" in dockerfile
