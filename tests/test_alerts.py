"""Incidents and their notifications, on a real Redis with a real HTTP receiver."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from collector import alerts, create_app, keys, outbound, redisconn, sites, webhooks
from collector.worker import Worker, backoff, classify, send_test
from tests import pki
from tests.conftest import api, on_both_backends, post
from tests.receiver import Answer, Receiver

# Every test here runs on a single Redis and on a three-master Redis Cluster.
backend = pytest.fixture(params=["single", "cluster"])(on_both_backends)

SECRET = "test-secret"
CONFIG = {
    "SECRET_KEY": SECRET,
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_RETRY_BASE": "1s",
    "DELIVERY_LEASE": "2s",
    "PUBLIC_URL": "https://collector.example",
}


@pytest.fixture
def app(redis_client, redis_url, tmp_path):
    return create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), **CONFIG})


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def worker(app, redis_client):
    w = Worker(redis_client, app.config, SECRET.encode(), name="test-worker")
    w.refresh_sites()
    return w


def hook(redis_client, site, url, fmt="json"):
    return webhooks.configure(redis_client, site.site.id, url, fmt, SECRET.encode())


def burst(client, site, report, n=5, clients=2, start=0):
    for i in range(n):
        response = post(client, site.site.id, report,
                        environ_base={"REMOTE_ADDR": f"198.51.100.{start + i % clients + 1}"})
        assert response.status_code == 200, response.data


def outbox(redis_client, site):
    return [(f[b"type"].decode(), json.loads(f[b"incident"]))
            for _id, f in redis_client.xrange(keys.outbox(site.site.id))]


def verify(received, secret):
    return Verifier(secret).verify(received.body, received.headers)


# --- firing ---------------------------------------------------------------------------


def test_a_burst_fires_exactly_one_signed_notification(client, site, ca, leaf, redis_client, receiver,
                                                       worker):
    secret = hook(redis_client, site, receiver.url)
    report = pki.chrome_report(leaf, ca)
    burst(client, site, report, n=4)
    assert outbox(redis_client, site) == []
    burst(client, site, report, n=1)
    burst(client, site, report, n=20)
    events = outbox(redis_client, site)
    assert [t for t, _ in events] == ["incident.firing"]

    assert worker.poll() == 1
    [received] = receiver.wait_for(1)
    body = verify(received, secret)
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["webhook-id"].startswith(f"evt_{site.site.id}_")
    assert body["type"] == "incident.firing"
    data = body["data"]
    assert data["site"] == {"id": site.site.id, "name": "Test site"}
    assert data["host"] == "www.example.com" and data["state"] == "firing"
    assert data["severity"] == "warning"
    assert data["counts"]["total"] == 5 and data["counts"]["by_status"] == {"MISSING": 5}
    assert data["counts"]["by_diagnosis"] == {"no_staple": 5}
    assert data["distinct_clients"] == 2
    assert data["diagnosis"]["code"] == "no_staple"
    assert "ocsp.example.test" in data["diagnosis"]["advice"]  # the report's own particulars
    assert data["url"] == f"https://collector.example/sites/{site.site.id}/hosts/www.example.com"
    assert data["started_at"].endswith("Z") and body["timestamp"].endswith("Z")
    assert worker.poll() == 0
    assert len(receiver.requests) == 1


def test_one_client_alone_does_not_fire(client, site, ca, leaf, redis_client):
    burst(client, site, pki.chrome_report(leaf, ca), n=30, clients=1)
    assert outbox(redis_client, site) == []
    state = api(client, site, "/hosts/www.example.com").get_json()
    assert state["alert_state"] == "ok" and state["incident"] is None


def test_reports_outside_the_window_do_not_add_up(redis_url, site, ca, leaf, redis_client):
    alerts.set_overrides(redis_client, site.site.id, {"window": 1})
    app_client = create_app({"REDIS_URL": redis_url, "SECRET_KEY": SECRET}).test_client()
    report = pki.chrome_report(leaf, ca)
    burst(app_client, site, report, n=4)
    time.sleep(2.1)
    burst(app_client, site, report, n=4, start=2)
    assert outbox(redis_client, site) == []
    burst(app_client, site, report, n=1, start=2)
    assert [t for t, _ in outbox(redis_client, site)] == ["incident.firing"]
    [(_, incident)] = outbox(redis_client, site)
    assert incident["counts"]["total"] == 5  # the first burst was forgotten


def test_a_must_staple_report_fires_at_once_as_critical(client, site, ca, redis_client):
    must = pki.make_leaf(ca, "strict.example.com", must_staple=True)
    burst(client, site, pki.chrome_report(must, ca), n=1, clients=1)
    [(kind, incident)] = outbox(redis_client, site)
    assert kind == "incident.firing"
    assert incident["host"] == "strict.example.com" and incident["severity"] == "critical"


def test_a_revoked_report_fires_at_once(client, site, ca, leaf, redis_client):
    der = pki.ocsp_response(leaf, ca, status="revoked")
    burst(client, site, pki.chrome_report(leaf, ca, response_status="PROVIDED", cert_status="REVOKED",
                                          ocsp_der=der), n=1, clients=1)
    [(kind, incident)] = outbox(redis_client, site)
    assert kind == "incident.firing" and incident["severity"] == "critical"
    assert incident["counts"]["by_diagnosis"] == {"revoked": 1}


def test_site_overrides_change_the_threshold(redis_client, redis_url, site, ca, leaf):
    alerts.set_overrides(redis_client, site.site.id, {"min_reports": 2, "min_clients": 1})
    client = create_app({"REDIS_URL": redis_url, "SECRET_KEY": SECRET}).test_client()
    burst(client, site, pki.chrome_report(leaf, ca), n=2, clients=1)
    assert [t for t, _ in outbox(redis_client, site)] == ["incident.firing"]
    with pytest.raises(ValueError, match="min-reports"):
        alerts.set_overrides(redis_client, site.site.id, {"min_reports": 0})


# --- resolving, reminders, flapping ---------------------------------------------------------


def test_silence_resolves_once_and_the_api_shows_the_history(app, client, site, ca, leaf, redis_client,
                                                              receiver, worker):
    secret = hook(redis_client, site, receiver.url)
    burst(client, site, pki.chrome_report(leaf, ca))
    now = int(time.time())
    assert worker.sweep(now + 60) == {"resolved": 0, "reminded": 0}  # not quiet long enough
    assert worker.sweep(now + 15 * 60) == {"resolved": 1, "reminded": 0}
    assert worker.sweep(now + 15 * 60 + 1) == {"resolved": 0, "reminded": 0}
    worker.poll()
    firing, resolved = receiver.wait_for(2)
    assert verify(firing, secret)["type"] == "incident.firing"
    body = verify(resolved, secret)
    assert body["type"] == "incident.resolved" and body["data"]["state"] == "resolved"
    assert body["data"]["resolved_at"] and body["data"]["counts"]["total"] == 5

    [incident] = api(client, site, "/incidents").get_json()["incidents"]
    assert incident["state"] == "resolved" and incident["host"] == "www.example.com"
    assert incident["counts"]["by_status"] == {"MISSING": 5} and incident["distinct_clients"] == 2
    assert incident["started_at"] and incident["resolved_at"] and incident["top_diagnosis"] == "no_staple"
    assert api(client, site, "/incidents?state=firing").get_json()["incidents"] == []
    assert api(client, site, "/hosts/www.example.com").get_json()["alert_state"] == "resolved"


def test_firing_again_soon_after_resolving_continues_the_same_incident(client, site, ca, leaf, redis_client,
                                                                        worker):
    report = pki.chrome_report(leaf, ca)
    burst(client, site, report)
    worker.sweep(int(time.time()) + 15 * 60)
    burst(client, site, report, n=3)
    assert [t for t, _ in outbox(redis_client, site)] == ["incident.firing", "incident.resolved"]
    burst(client, site, report, n=2)
    events = outbox(redis_client, site)
    assert [t for t, _ in events] == ["incident.firing", "incident.resolved", "incident.firing"]
    assert events[0][1]["id"] == events[2][1]["id"]
    assert events[2][1]["reopened"] == 1 and events[2][1]["counts"]["total"] == 10
    [incident] = api(client, site, "/incidents").get_json()["incidents"]
    assert incident["state"] == "firing" and incident["reopened"] == 1


def test_after_a_quiet_period_a_new_incident_starts(redis_client, redis_url, site, ca, leaf, app):
    alerts.set_overrides(redis_client, site.site.id, {"resolve_after": 1})
    client = create_app({"REDIS_URL": redis_url, "SECRET_KEY": SECRET}).test_client()
    worker = Worker(redis_client, app.config, SECRET.encode())
    worker.refresh_sites()
    report = pki.chrome_report(leaf, ca)
    burst(client, site, report)
    time.sleep(1.1)
    assert worker.sweep(int(time.time()))["resolved"] == 1
    time.sleep(1.1)
    burst(client, site, report)
    events = outbox(redis_client, site)
    assert [t for t, _ in events] == ["incident.firing", "incident.resolved", "incident.firing"]
    assert events[0][1]["id"] != events[2][1]["id"] and events[2][1]["counts"]["total"] == 5
    assert [i["state"] for i in api(client, site, "/incidents").get_json()["incidents"]] == ["firing", "resolved"]


def test_a_reminder_goes_out_once_per_interval_while_firing(client, site, ca, leaf, redis_client, worker):
    report = pki.chrome_report(leaf, ca)
    burst(client, site, report)
    now = int(time.time())
    # Reports keep coming, so it does not resolve; four hours on, one reminder.
    redis_client.hset(keys.alert_state(site.site.id, "www.example.com"), "last", now + 4 * 3600)
    assert worker.sweep(now + 4 * 3600) == {"resolved": 0, "reminded": 1}
    assert worker.sweep(now + 4 * 3600 + 5) == {"resolved": 0, "reminded": 0}
    assert [t for t, _ in outbox(redis_client, site)] == ["incident.firing", "incident.reminder"]


def test_concurrent_sweeps_resolve_once(client, site, ca, leaf, redis_client, redis_url, redis_cluster, app):
    for i in range(5):
        burst(client, site, pki.chrome_report(leaf, ca, hostname=f"h{i}.example.com"))
    later = int(time.time()) + 3600
    workers = [Worker(redisconn.connect(redis_url, cluster=redis_cluster), app.config,
                      SECRET.encode()) for _ in range(4)]
    for w in workers:
        w.refresh_sites()
    results: list[dict[str, int]] = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.sweep(later))) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["resolved"] for r in results) == 5
    kinds = [t for t, _ in outbox(redis_client, site)]
    assert kinds.count("incident.firing") == 5 and kinds.count("incident.resolved") == 5


def _ingest_process(redis_url: str, site_id: str, chain: list[str], worker_index: int, rounds: int,
                    hosts: int, barrier) -> None:
    app = create_app({"REDIS_URL": redis_url, "SECRET_KEY": SECRET})
    client = app.test_client()
    barrier.wait()
    for r in range(rounds):
        for h in range(hosts):
            report = {"hostname": f"h{h}.example.com", "port": 443, "response-status": "MISSING",
                      "served-certificate-chain": chain, "validated-certificate-chain": chain}
            client.post(f"/r/{site_id}/staple", json=report,
                        environ_base={"REMOTE_ADDR": f"203.0.113.{worker_index * 50 + r % 7}"})


def test_concurrent_ingest_from_several_processes_fires_once_per_host(redis_url, redis_client, site, ca, leaf):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    processes = [ctx.Process(target=_ingest_process,
                             args=(redis_url, site.site.id, [leaf.pem, ca.pem], i, 20, 8, barrier))
                 for i in range(6)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    events = outbox(redis_client, site)
    assert sorted(i["host"] for _, i in events) == [f"h{h}.example.com" for h in range(8)]
    assert {t for t, _ in events} == {"incident.firing"}
    for h in range(8):
        state = redis_client.hgetall(keys.alert_state(site.site.id, f"h{h}.example.com"))
        assert state[b"total"] == b"120"  # every report counted, none lost in the race


# --- delivery ---------------------------------------------------------------------------------


def test_500_then_200_delivers_twice_and_no_more(client, site, ca, leaf, redis_client, worker):
    receiver = Receiver([Answer(500)])
    try:
        secret = hook(redis_client, site, receiver.url)
        burst(client, site, pki.chrome_report(leaf, ca))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        try:
            first, second = receiver.wait_for(2)
            deadline = time.monotonic() + 10
            while redis_client.zcard(keys.retry(site.site.id)) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # longer than a retry step: give a wrong third attempt the chance to happen
        finally:
            stop.set()
            thread.join(10)
        assert len(receiver.requests) == 2
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert verify(second, secret)["type"] == "incident.firing"
        log = api(client, site, "/deliveries").get_json()
        assert [(d["attempt"], d["outcome"], d["status_code"]) for d in log["deliveries"]] == [
            (2, "delivered", 200), (1, "retrying", 500)]
        assert log["deliveries"][1]["next_attempt_at"] and log["deliveries"][0]["latency_ms"] >= 0
        assert log["dead_letters"] == [] and log["queue"] == {"pending": 0, "retrying": 0}
        assert log["webhook"]["destination"] == f"http://127.0.0.1:{receiver.port}/…"
    finally:
        receiver.close()


@pytest.mark.parametrize("status", [400, 404, 403])
def test_a_4xx_is_permanent_and_becomes_a_dead_letter(status, client, site, ca, leaf, redis_client, worker):
    receiver = Receiver(default=Answer(status))
    try:
        hook(redis_client, site, receiver.url)
        burst(client, site, pki.chrome_report(leaf, ca))
        worker.poll()
        assert len(receiver.requests) == 1
        log = api(client, site, "/deliveries").get_json()
        assert [d["outcome"] for d in log["deliveries"]] == ["failed"]
        [dead] = log["dead_letters"]
        assert dead["status_code"] == status and dead["event"]["type"] == "incident.firing"
        assert dead["event"]["incident"]["host"] == "www.example.com"
        assert redis_client.zcard(keys.retry(site.site.id)) == 0
    finally:
        receiver.close()


@pytest.mark.parametrize("status", [408, 429, 503])
def test_408_429_and_5xx_are_retried(status):
    assert classify(status, None) == "retry"
    assert classify(None, "timeout") == "retry"
    assert classify(None, "refused: 10.0.0.1 is internal") == "permanent"


def test_backoff_grows_with_jitter_and_is_bounded():
    import random

    rng = random.Random(7)
    delays = [backoff(n, 30, rng) for n in range(1, 20)]
    assert 15 <= delays[0] <= 30 and 30 <= delays[1] <= 60
    assert max(delays) <= 6 * 3600 and delays[-1] >= 3 * 3600
    schedule = sum(min(6 * 3600, 30 * 2 ** (n - 1)) for n in range(1, 15))
    assert 20 * 3600 < schedule < 40 * 3600  # about a day of retries with the defaults


def test_retrying_past_the_retry_span_gives_a_dead_letter(redis_client, redis_url, site, ca, leaf, tmp_path):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), **CONFIG,
                      "WEBHOOK_RETRY_FOR": "0"})
    worker = Worker(redis_client, app.config, SECRET.encode())
    worker.refresh_sites()
    receiver = Receiver(default=Answer(502))
    try:
        hook(redis_client, site, receiver.url)
        burst(app.test_client(), site, pki.chrome_report(leaf, ca))
        worker.poll()
        log = api(app.test_client(), site, "/deliveries").get_json()
        assert [d["outcome"] for d in log["deliveries"]] == ["dead"]
        assert log["dead_letters"][0]["status_code"] == 502
    finally:
        receiver.close()


def test_410_disables_the_webhook(client, site, ca, leaf, redis_client, worker):
    receiver = Receiver(default=Answer(410))
    try:
        hook(redis_client, site, receiver.url)
        burst(client, site, pki.chrome_report(leaf, ca))
        worker.poll()
        assert webhooks.get(redis_client, site.site.id).disabled.startswith("the endpoint answered 410")
        burst(client, site, pki.chrome_report(leaf, ca, hostname="other.example.com"))
        worker.poll()
        assert len(receiver.requests) == 1
        log = api(client, site, "/deliveries").get_json()
        assert [d["outcome"] for d in log["deliveries"]] == ["skipped", "disabled"]
        assert log["webhook"]["enabled"] is False
    finally:
        receiver.close()


def test_slack_and_discord_formats(client, site, ca, leaf, redis_client, receiver, worker):
    hook(redis_client, site, receiver.url, "slack")
    burst(client, site, pki.chrome_report(leaf, ca))
    worker.poll()
    [slack] = receiver.wait_for(1)
    message = slack.json()
    assert message["text"] == "Stapling is failing on www.example.com (warning)"
    assert any("What to do" in b.get("text", {}).get("text", "") for b in message["blocks"])
    assert f"sites/{site.site.id}/hosts/www.example.com" in json.dumps(message["blocks"])

    hook(redis_client, site, receiver.url, "discord")
    burst(client, site, pki.chrome_report(leaf, ca, hostname="two.example.com"))
    worker.poll()
    discord = receiver.wait_for(2)[1].json()
    assert discord["allowed_mentions"] == {"parse": []}
    [embed] = discord["embeds"]
    assert "two.example.com" in embed["title"] and embed["color"] == webhooks.DISCORD_COLOURS["warning"]
    assert {f["name"] for f in embed["fields"]} >= {"Site", "Started", "Reports", "Distinct clients"}


def test_chat_formats_escape_markup():
    body = webhooks.payload(
        "incident.firing",
        alerts.shape_record({"id": 1, "host": "x.example", "state": "firing", "severity": "warning",
                             "started_at": 1, "counts": {"total": 1, "by_status": {"<!here>": 1}}}),
        {"id": "s", "name": "<b>*evil*</b> @everyone"}, "https://c.example", 1, None)
    assert "<!here>" not in json.dumps(webhooks.slack(body))
    discord = webhooks.discord(body)
    [site_field] = [f for f in discord["embeds"][0]["fields"] if f["name"] == "Site"]
    assert site_field["value"] == "<b\\>\\*evil\\*</b\\> @everyone"
    assert discord["allowed_mentions"] == {"parse": []}


# --- outbound safety ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.5", "::1",
                                     "fd12::1", "100.64.0.1", "::ffff:127.0.0.1", "0.0.0.0"])
def test_internal_addresses_are_refused_by_default(address):
    assert not outbound.address_allowed(address, allow_private=False)


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "fe80::1", "169.254.1.1"])
def test_metadata_and_link_local_stay_refused_even_when_private_is_allowed(address):
    assert not outbound.address_allowed(address, allow_private=True)


def test_public_addresses_are_allowed():
    assert outbound.address_allowed("93.184.215.14", allow_private=False)
    assert outbound.address_allowed("2606:4700::1111", allow_private=False)
    assert outbound.address_allowed("127.0.0.1", allow_private=True)


def test_a_webhook_to_a_private_address_is_refused_at_delivery(redis_client, redis_url, site, ca, leaf,
                                                               receiver, tmp_path):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET})
    assert app.config["WEBHOOK_ALLOW_PRIVATE"] is False
    with pytest.raises(outbound.Refused, match="internal address"):
        webhooks.validate_url(receiver.url, allow_private=False)
    with pytest.raises(outbound.Refused):
        webhooks.validate_url("http://localhost:9/x", allow_private=False)
    # Set behind the check's back (say the operator turned the setting off later): still refused.
    hook(redis_client, site, receiver.url)
    worker = Worker(redis_client, app.config, SECRET.encode())
    worker.refresh_sites()
    burst(app.test_client(), site, pki.chrome_report(leaf, ca))
    worker.poll()
    assert receiver.requests == []
    [entry] = api(app.test_client(), site, "/deliveries").get_json()["deliveries"]
    assert entry["outcome"] == "failed" and entry["error"].startswith("refused:")


def test_a_redirect_to_a_metadata_address_is_not_followed(receiver):
    redirect = Receiver(default=Answer(307, headers={"Location": "http://169.254.169.254/latest/meta-data"}))
    try:
        result = outbound.post(redirect.url, b"{}", {}, timeout=2, allow_private=True)
        assert result.status is None and result.error.startswith("refused:")
        assert len(redirect.requests) == 1
        ok = Receiver(default=Answer(308, headers={"Location": receiver.url}))
        try:
            assert outbound.post(ok.url, b"{}", {}, timeout=2, allow_private=True).status == 200
            assert receiver.wait_for(1)[0].body == b"{}"
        finally:
            ok.close()
    finally:
        redirect.close()


def test_a_slow_receiver_times_out_and_is_retried(client, site, ca, leaf, redis_client, redis_url, tmp_path):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), **CONFIG,
                      "WEBHOOK_TIMEOUT": "1s"})
    worker = Worker(redis_client, app.config, SECRET.encode())
    worker.refresh_sites()
    receiver = Receiver([Answer(200, delay=3)])
    try:
        hook(redis_client, site, receiver.url)
        burst(client, site, pki.chrome_report(leaf, ca))
        worker.poll()
        [entry] = api(client, site, "/deliveries").get_json()["deliveries"]
        assert entry["outcome"] == "retrying" and entry["error"] == "timeout"
    finally:
        receiver.close()


# --- secrets, tests, API ------------------------------------------------------------------------


def test_the_signing_secret_is_stored_encrypted(redis_client, site):
    secret = hook(redis_client, site, "https://hooks.example.com/x")
    assert secret.startswith("whsec_")
    stored = redis_client.hget(keys.site(site.site.id), "webhook_secret").decode()
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert webhooks.unseal(stored, SECRET.encode()) == secret
    with pytest.raises(webhooks.SecretUnreadable, match="SECRET_KEY changed"):
        webhooks.unseal(stored, b"another key")


def test_send_test_notification(app, site, redis_client, receiver):
    secret = hook(redis_client, site, receiver.url)
    entry = send_test(redis_client, app.config, SECRET.encode(), sites.get(redis_client, site.site.id))
    assert entry["outcome"] == "delivered" and entry["status_code"] == 200
    body = verify(receiver.wait_for(1)[0], secret)
    assert body["type"] == "test" and body["data"]["site"]["id"] == site.site.id
    assert set(body["data"]) >= {"site", "host", "state", "severity", "started_at", "counts",
                                 "distinct_clients", "diagnosis", "url"}


def test_incidents_and_deliveries_need_the_sites_token(client, site, redis_client):
    other = sites.create(redis_client, "Other", [])
    for path in ("/incidents", "/deliveries"):
        assert client.get(f"/api/v1/sites/{site.site.id}{path}").status_code == 401
        assert api(client, site, path, token=other.token).status_code == 404
        assert api(client, site, path).status_code == 200
    assert api(client, site, "/incidents?state=bogus").status_code == 400
    assert api(client, site, "/incidents?limit=0").status_code == 400


def test_worker_heartbeat(worker, redis_client):
    worker.heartbeat()
    assert redis_client.ttl(keys.worker("test-worker")) > 0


def test_a_changed_secret_key_fails_the_delivery_with_advice(client, site, ca, leaf, redis_client, receiver, app):
    hook(redis_client, site, receiver.url)
    worker = Worker(redis_client, app.config, b"another secret key")
    worker.refresh_sites()
    burst(client, site, pki.chrome_report(leaf, ca))
    worker.poll()
    assert receiver.requests == []
    [entry] = api(client, site, "/deliveries").get_json()["deliveries"]
    assert entry["outcome"] == "failed" and "SECRET_KEY changed" in entry["error"]
    assert "site webhook" in entry["error"]
