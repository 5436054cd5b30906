"""Alerting as an operator runs it: `serve` with its worker, `staple-collector worker`, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook as Verifier

from collector import create_app, keys, sites, webhooks
from tests import pki
from tests.conftest import free_port
from tests.receiver import Answer, Receiver
from tests.test_serve import CLI, Serve, _env, data_dir  # noqa: F401 (fixture)

SECRET = "e2e-secret"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def _wait(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    response = requests.get(url, headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _post_reports(base: str, site_id: str, report: dict, count: int, first_client: int) -> list[int]:
    # Each "client" is a distinct address as the collector sees it behind one trusted proxy.
    statuses = []
    with requests.Session() as session:
        for i in range(count):
            response = session.post(
                f"{base}/r/{site_id}/staple", json=report, timeout=10,
                headers={"X-Forwarded-For": f"198.51.100.{first_client + i % 3}"},
            )
            statuses.append(response.status_code)
    return statuses


def test_serve_runs_a_worker_that_fires_once_and_resolves(data_dir):  # noqa: F811
    receiver = Receiver()
    env = _env(WEBHOOK_ALLOW_PRIVATE="true", ALERT_RESOLVE_AFTER="3s", ALERT_SWEEP_INTERVAL="1s",
               TRUSTED_PROXIES="1", WEB_CONCURRENCY="3", SITE_CACHE_TTL="0")
    serve = Serve(data_dir, env)
    try:
        cli_env = {**env, "STAPLE_DATA_DIR": str(data_dir)}
        created = _cli("site", "create", "Shop", "--json", env=cli_env)
        site_id = json.loads(created.stdout)["id"]
        out = _cli("site", "webhook", site_id, receiver.url, "--json", env=cli_env)
        assert out.returncode == 0, out.stderr
        hook = json.loads(out.stdout)
        assert hook["url"] == receiver.url and hook["format"] == "json"
        assert hook["secret"].startswith("whsec_")
        alerts_out = _cli("site", "alerts", site_id, "--min-reports", "10", "--json", env=cli_env)
        assert json.loads(alerts_out.stdout)["policy"]["min_reports"] == 10

        ca = pki.make_ca()
        report = pki.chrome_report(pki.make_leaf(ca, "www.shop.example"), ca)
        # Four processes post at once through gunicorn's three workers.
        with ProcessPoolExecutor(4) as pool:
            results = list(pool.map(_post_reports, [serve.base] * 4, [site_id] * 4, [report] * 4,
                                    [10] * 4, [1, 11, 21, 31]))
        assert all(s == 200 for statuses in results for s in statuses)

        [firing] = receiver.wait_for(1)
        body = Verifier(hook["secret"]).verify(firing.body, firing.headers)
        assert body["type"] == "incident.firing" and body["data"]["host"] == "www.shop.example"
        # Silence: resolved within resolve-after (3 s) plus the sweep interval (1 s).
        firing_, resolved = receiver.wait_for(2, timeout=30)
        body = Verifier(hook["secret"]).verify(resolved.body, resolved.headers)
        assert body["type"] == "incident.resolved" and body["data"]["counts"]["total"] == 40
        assert body["data"]["distinct_clients"] == 12

        test = _cli("alert", "test", site_id, env=cli_env)
        assert test.returncode == 0, test.stderr
        assert "delivered (HTTP 200" in test.stdout
        assert receiver.wait_for(3)[2].json()["type"] == "test"
        time.sleep(1.5)  # two more sweeps: nothing else may arrive
        assert len(receiver.requests) == 3

        # /metrics adds up the three gunicorn workers and the alert worker.
        scraped = scrape(f"{serve.base}/metrics")
        assert scraped[("staple_reports_total", (("outcome", "accepted"), ("reason", "")))] == 40
        assert scraped[("staple_reports_by_status_total", (("status", "MISSING"),))] == 40
        assert scraped[("staple_ingest_duration_seconds_count", ())] == 40
        assert scraped[("staple_ingest_responses_total", (("code", "200"),))] == 40
        assert scraped[("staple_incident_events_total", (("type", "incident.firing"),))] == 1
        assert scraped[("staple_incident_events_total", (("type", "incident.resolved"),))] == 1
        assert scraped[("staple_webhook_deliveries_total", (("outcome", "delivered"),))] == 2
        assert scraped[("staple_webhook_delivery_duration_seconds_count", ())] == 2
        assert scraped[("staple_incidents", (("state", "firing"),))] == 0
        assert scraped[("staple_outbox_backlog", ())] == 0
        assert scraped[("staple_sites", ())] == 1
    finally:
        output = serve.stop()
        receiver.close()
    assert "alert worker  pid" in output
    # Structured logs: after the banner, one JSON object per line, no client address.
    banner, _, log_text = output.partition("alert worker  pid")
    lines = [line for line in log_text.splitlines()[1:] if line.strip()]
    assert lines, output
    events = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "msg"} <= set(events[0])
    assert any(e.get("event") == "delivery" and e.get("outcome") == "delivered" for e in events)
    assert "198.51.100." not in log_text
    assert hook["secret"] not in log_text


@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_a_worker_killed_mid_delivery_loses_nothing(tmp_path: Path, redis_url: str, redis_client):
    # On the cluster, the worker processes get REDIS_CLUSTER=true from the environment.
    client = redis_client
    # The first delivery hangs long enough for us to kill the worker in the middle of it.
    receiver = Receiver([Answer(200, delay=5)])
    env = _env(REDIS_URL=redis_url, SECRET_KEY=SECRET, WEBHOOK_ALLOW_PRIVATE="true",
               DELIVERY_LEASE="2s", WEBHOOK_TIMEOUT="10s", STAPLE_DATA_DIR=str(tmp_path / "data"))
    workers: list[subprocess.Popen] = []
    try:
        site = sites.create(client, "Shop", [])
        webhooks.configure(client, site.site.id, receiver.url, "json", SECRET.encode())
        app = create_app({"REDIS_URL": redis_url, "SECRET_KEY": SECRET, "STAPLE_DATA_DIR": str(tmp_path)})
        workers.append(subprocess.Popen([CLI, "worker"], env=env, stderr=subprocess.PIPE, text=True))
        ca = pki.make_ca()
        report = pki.chrome_report(pki.make_leaf(ca, "www.shop.example"), ca)
        web = app.test_client()
        for i in range(5):
            web.post(f"/r/{site.site.id}/staple", json=report, environ_base={"REMOTE_ADDR": f"10.9.0.{i % 2}"})

        [first] = receiver.wait_for(1, timeout=30)  # the worker is now waiting for the answer
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        pending = client.xpending(keys.outbox(site.site.id), keys.OUTBOX_GROUP)
        assert pending["pending"] == 1  # read, never acknowledged

        # The second worker runs as in a container of its own: its own /metrics port.
        metrics_port = free_port()
        workers.append(subprocess.Popen([CLI, "worker"], env={**env, "WORKER_METRICS_PORT": str(metrics_port)},
                                        stderr=subprocess.PIPE, text=True))
        second = receiver.wait_for(2, timeout=30)[1]
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        _wait(lambda: client.xpending(keys.outbox(site.site.id), keys.OUTBOX_GROUP)["pending"] == 0,
              what="the take-over to be acknowledged")
        log = [json.loads(f[b"d"]) for _id, f in client.xrange(keys.deliveries(site.site.id))]
        assert [entry["outcome"] for entry in log] == ["delivered"]
        scraped = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped[("staple_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
        assert scraped[("staple_incident_events_total", (("type", "incident.firing"),))] == 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(15)
        receiver.close()
    assert workers[1].returncode == 0  # SIGTERM stops the worker cleanly
    events = [json.loads(line) for line in workers[1].stderr.read().splitlines() if line.strip()]
    delivered = [e for e in events if e.get("event") == "delivery"]
    assert [e["outcome"] for e in delivered] == ["delivered"]
    assert delivered[0]["site"] == site.site.id and delivered[0]["status_code"] == 200


def test_cli_refuses_a_private_webhook_by_default_and_shows_the_configuration(data_dir):  # noqa: F811
    env = {**_env(), "STAPLE_DATA_DIR": str(data_dir)}
    site_id = json.loads(_cli("site", "create", "Shop", "--json", env=env).stdout)["id"]
    for url in ("http://127.0.0.1:8080/hook", "http://10.0.0.5/hook", "http://169.254.169.254/latest",
                "ftp://hooks.example.com/"):
        refused = _cli("site", "webhook", site_id, url, env=env)
        assert refused.returncode == 2 and "webhook refused" in refused.stderr, url
    shown = _cli("site", "webhook", site_id, env=env)
    assert "has no webhook" in shown.stdout
    allowed = _cli("site", "webhook", site_id, "http://127.0.0.1:9/hook/secret-token", "--format", "slack",
                   env={**env, "WEBHOOK_ALLOW_PRIVATE": "true"})
    assert allowed.returncode == 0 and "whsec_" in allowed.stdout
    shown = _cli("site", "webhook", site_id, "--json", env=env)
    info = json.loads(shown.stdout)
    assert info["destination"] == "http://127.0.0.1:9/…" and "secret-token" not in shown.stdout
    assert info["format"] == "slack" and info["enabled"] is True
    failed = _cli("alert", "test", site_id, env={**env, "WEBHOOK_ALLOW_PRIVATE": "true"})
    assert failed.returncode == 1 and "failed" in failed.stdout and "connection refused" in failed.stdout
    bad = _cli("site", "alerts", site_id, "--window", "5 min", env=env)
    assert bad.returncode == 2 and "--window" in bad.stderr
    shown = _cli("site", "alerts", site_id, "--window", "90s", "--repeat", "0", env=env)
    assert "window         90s    (this site)" in shown.stdout
    assert "min-reports    5      (default)" in shown.stdout
    reset = json.loads(_cli("site", "alerts", site_id, "--reset", "--json", env=env).stdout)
    assert reset["overridden"] == [] and reset["policy"]["window"] == "5m"
    assert os.path.isdir(data_dir)
