"""/metrics: what it counts, its Redis gauges, its token, and the Grafana dashboards over it.

Multiprocess correctness (several gunicorn workers and the alert worker adding
up) is checked against a real `serve` in test_alerting_end_to_end.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector import create_app, metrics
from tests import pki
from tests.conftest import app_config, assert_error_shape, on_both_backends, post

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))

backend = pytest.fixture(params=["single", "cluster"])(on_both_backends)


def families(web, headers: dict[str, str] | None = None) -> dict[str, object]:
    response = web.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}


def value(found: dict, family: str, sample: str, **labels: str) -> float:
    for s in found[family].samples:
        if s.name == sample and s.labels == labels:
            return s.value
    return 0.0


def test_counters_follow_what_the_endpoint_decided(app, client, site, ca, leaf):
    before = families(client)
    report = pki.chrome_report(leaf, ca)
    assert post(client, site.site.id, report).status_code == 200
    assert post(client, site.site.id, b"{oops").status_code == 400
    assert post(client, site.site.id, {**report, "response-status": "NOPE"}).status_code == 400
    after = families(client)

    def delta(family: str, sample: str, **labels: str) -> float:
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    assert delta("staple_reports", "staple_reports_total", outcome="accepted", reason="") == 1
    assert delta("staple_reports", "staple_reports_total", outcome="rejected", reason="invalid_json") == 1
    assert delta("staple_reports", "staple_reports_total", outcome="rejected", reason="invalid_report") == 1
    assert delta("staple_reports_by_status", "staple_reports_by_status_total", status="MISSING") == 1
    assert delta("staple_reports_by_diagnosis", "staple_reports_by_diagnosis_total",
                 diagnosis="no_staple", severity="warning") == 1
    assert delta("staple_ingest_responses", "staple_ingest_responses_total", code="200") == 1
    assert delta("staple_ingest_responses", "staple_ingest_responses_total", code="400") == 2
    assert delta("staple_ingest_duration_seconds", "staple_ingest_duration_seconds_count") == 3


def test_rate_limited_and_capped_reports_are_counted_with_their_reason(redis_url, redis_cluster, tmp_path,
                                                                      redis_client, site, ca, leaf):
    web = create_app(app_config(redis_url, redis_cluster, tmp_path, RATE_LIMIT_CLIENT="2",
                                MAX_HOSTS_PER_SITE="1")).test_client()
    before = families(web)
    for host in ("a.example.com", "b.example.com", "a.example.com", "a.example.com"):
        post(web, site.site.id, pki.chrome_report(leaf, ca, hostname=host))
    after = families(web)
    for reason, n in (("too_many_hosts", 1), ("rate_limited", 2)):
        assert (value(after, "staple_reports", "staple_reports_total", outcome="rejected", reason=reason)
                - value(before, "staple_reports", "staple_reports_total", outcome="rejected", reason=reason)) == n
    assert (value(after, "staple_ingest_responses", "staple_ingest_responses_total", code="429")
            - value(before, "staple_ingest_responses", "staple_ingest_responses_total", code="429")) == 2


def test_redis_gauges_show_firing_incidents_and_the_unread_backlog(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca)
    for i in range(6):  # past the default thresholds: 5 reports from 2 clients
        post(client, site.site.id, report, environ_base={"REMOTE_ADDR": f"198.51.100.{i % 3}"})
    found = families(client)
    assert value(found, "staple_incidents", "staple_incidents", state="firing") == 1
    # No worker runs here: the firing notification waits, unread.
    assert value(found, "staple_outbox_backlog", "staple_outbox_backlog") == 1
    assert value(found, "staple_outbox_oldest_seconds", "staple_outbox_oldest_seconds") >= 0
    assert value(found, "staple_sites", "staple_sites") == 1


def test_a_metrics_token_is_required_when_set(redis_url, redis_cluster, tmp_path, redis_client):
    web = create_app(app_config(redis_url, redis_cluster, tmp_path, METRICS_TOKEN="s3cret-token")).test_client()
    assert_error_shape(web.get("/metrics"), 401, "unauthorized")
    assert_error_shape(web.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    assert "staple_reports" in families(web, {"Authorization": "Bearer s3cret-token"})


def test_metrics_answer_even_when_redis_is_down(tmp_path):
    from tests.conftest import free_port

    web = create_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "STAPLE_DATA_DIR": str(tmp_path),
                      "REDIS_TIMEOUT": "1s"}).test_client()
    found = families(web)
    assert "staple_reports" in found
    assert "staple_incidents" not in found  # not guessed when Redis cannot tell
    before = value(found, "staple_redis_errors", "staple_redis_errors_total", process="web")
    # The failed read is counted (seen by the next scrape, as the counter was already out).
    assert value(families(web), "staple_redis_errors", "staple_redis_errors_total", process="web") == before + 1


# --- the Grafana dashboards --------------------------------------------------------------


def _exported(found: dict) -> dict[str, set[str]]:
    """Sample names a query can use, with the labels each has."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: dict[str, set[str]] = {}
    for family in found.values():
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        for suffix in suffixes.get(family.type, ("",)):
            names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def _exprs(path: Path) -> list[str]:
    board = json.loads(path.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("backend", ["single"])
@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_metric_a_dashboard_queries_is_one_the_collector_exports(path, client, site, ca, leaf):
    # Some traffic first, so labelled families show the labels they carry.
    post(client, site.site.id, pki.chrome_report(leaf, ca))
    post(client, site.site.id, b"{")
    metrics.DELIVERIES.labels("delivered")
    metrics.INCIDENT_EVENTS.labels("incident.firing")
    metrics.PROBES.labels("ok")
    metrics.REDIS_ERRORS.labels("web")
    exported = _exported(families(client))
    exprs = _exprs(path)
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\bstaple_[a-z_]+", expr))
        assert used, expr
        for name in used:
            assert name in exported, f"{path.name}: {name} is not exported (query: {expr})"
        labels = {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")}
        labels |= set(re.findall(r"[{,]\s*([a-z_]+)\s*(?:=|!=|=~)", expr))
        allowed = set().union(*(exported[name] for name in used))
        assert labels <= allowed, f"{path.name}: labels {labels - allowed} not on {used} (query: {expr})"


def test_dashboards_are_provisioned_and_scraped_as_compose_says():
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["datasource"]["type"] == "prometheus"
    assert len({json.loads(p.read_text())["uid"] for p in DASHBOARDS}) == len(DASHBOARDS) >= 2

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
    scrape = yaml.safe_load((ROOT / "dashboards" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    worker_port = services["worker"]["environment"]["WORKER_METRICS_PORT"]
    assert targets == {"web:8000", f"worker:{worker_port}"}
    assert services["web"]["ports"] == ["8000:8000"]
    datasources = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
