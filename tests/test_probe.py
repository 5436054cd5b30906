"""The active probe against real TLS servers (openssl s_server) stapling test-made OCSP responses."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from collector import create_app, keys, probe, probes, sites
from collector.worker import Worker
from tests import pki
from tests.conftest import api, free_port
from tests.test_serve import CLI, _env
from tests.tls_server import StapleServer

HOST = "www.example.com"


@pytest.fixture(scope="module")
def must_leaf(ca):
    return pki.make_leaf(ca, HOST, must_staple=True)


@pytest.fixture
def ca_file(tmp_path: Path, ca) -> str:
    path = tmp_path / "ca.pem"
    path.write_text(ca.pem)
    return str(path)


def _run(*args: str) -> tuple[int, dict]:
    done = subprocess.run([CLI, "probe", *args, "--json"], capture_output=True, text=True, timeout=60,
                          env=_env())
    return done.returncode, json.loads(done.stdout)


def _staples(ca, leaf):
    now = pki.now()
    return {
        "good": pki.ocsp_response(leaf, ca),
        "expired": pki.ocsp_response(leaf, ca, this_update=now - dt.timedelta(days=5),
                                     next_update=now - dt.timedelta(days=1)),
        "revoked": pki.ocsp_response(leaf, ca, status="revoked"),
        "other": pki.ocsp_response(pki.make_leaf(ca, HOST), ca),
        "unsuccessful": pki.unsuccessful(),
    }


CASES = [
    # staple, tls, response-status, cert-status, diagnosis, severity, exit
    ("good", "1.3", "PROVIDED", "GOOD", "valid", "ok", 0),
    ("good", "1.2", "PROVIDED", "GOOD", "valid", "ok", 0),
    (None, "1.3", "MISSING", None, "no_staple", "warning", 1),
    (None, "1.2", "MISSING", None, "no_staple", "warning", 1),
    ("expired", None, "INVALID_DATE", None, "stale_staple", "warning", 1),
    ("revoked", None, "PROVIDED", "REVOKED", "revoked", "critical", 1),
    ("other", None, "NO_MATCHING_RESPONSE", None, "wrong_certificate", "warning", 1),
    ("unsuccessful", None, "ERROR_RESPONSE", None, "responder_error", "warning", 1),
]


@pytest.mark.parametrize("staple, tls, status, cert_status, code, severity, exit_code", CASES)
def test_probe_judges_the_staple_like_chrome(tmp_path, ca, leaf, ca_file, staple, tls, status, cert_status,
                                             code, severity, exit_code):
    der = _staples(ca, leaf)[staple] if staple else None
    server = StapleServer(tmp_path / "srv", leaf, ca, der, tls)
    try:
        returncode, out = _run(server.target, "--servername", HOST, "--ca-file", ca_file)
    finally:
        server.stop()
    assert returncode == exit_code
    assert out["response_status"] == status and out["cert_status"] == cert_status
    assert out["diagnosis"]["code"] == code and out["diagnosis"]["severity"] == severity
    assert out["tls_version"] == ("TLSv1.2" if tls == "1.2" else "TLSv1.3")
    assert out["must_staple"] is False and out["trusted"] is True
    assert out["certificate"]["subject"] == f"CN={HOST}" and out["chain_length"] == 2
    assert (out["ocsp"] is None) == (der is None)
    if staple == "revoked":
        assert out["ocsp"]["cert_status"] == "revoked" and out["ocsp"]["revocation_reason"] == "key_compromise"
    if staple == "other":
        assert out["ocsp"]["matches_leaf"] is False


def test_a_must_staple_leaf_without_a_staple_is_critical(tmp_path, ca, must_leaf, ca_file):
    server = StapleServer(tmp_path / "srv", must_leaf, ca)
    try:
        returncode, out = _run(server.target, "--servername", HOST, "--ca-file", ca_file)
    finally:
        server.stop()
    assert returncode == 1
    assert out["response_status"] == "MISSING" and out["must_staple"] is True
    assert out["diagnosis"]["code"] == "no_staple" and out["diagnosis"]["severity"] == "critical"
    assert "Must-Staple" in out["diagnosis"]["summary"]


def test_an_untrusted_chain_is_reported_not_fatal(tmp_path, ca, leaf):
    server = StapleServer(tmp_path / "srv", leaf, ca, pki.ocsp_response(leaf, ca))
    try:
        returncode, out = _run(server.target, "--servername", HOST)
        human = subprocess.run([CLI, "probe", server.target, "--servername", HOST], capture_output=True,
                               text=True, timeout=60, env=_env())
    finally:
        server.stop()
    assert returncode == 0 and out["ok"] is True
    assert out["trusted"] is False and "self-signed certificate in chain" in out["verify_errors"][0]
    assert human.returncode == 0
    assert "verdict       valid (ok)" in human.stdout and "NOT trusted" in human.stdout
    assert "staple        PROVIDED / GOOD" in human.stdout


def test_an_unreachable_host_exits_2_with_the_reason():
    done = subprocess.run([CLI, "probe", f"127.0.0.1:{free_port()}", "--servername", HOST], capture_output=True,
                          text=True, timeout=60, env=_env())
    assert done.returncode == 2 and "cannot connect" in done.stderr and "refused" in done.stderr


def test_a_failed_handshake_exits_2(tmp_path):
    # A plain TCP server that closes at once: not TLS.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(probe.ProbeError, match="handshake"):
            probe.probe(probe.Target("127.0.0.1", port, HOST), timeout=5)
    finally:
        listener.close()


def test_parse_target():
    assert probe.parse_target("Example.com") == probe.Target("example.com", 443)
    assert probe.parse_target("example.com:8443") == probe.Target("example.com", 8443)
    assert probe.parse_target("[::1]:8443") == probe.Target("::1", 8443)
    with pytest.raises(ValueError):
        probe.parse_target("example.com:99999")


@pytest.fixture
def collector_http(redis_url, redis_client, tmp_path):
    """The collector's app on a real HTTP socket (werkzeug), for --report-to."""
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "s"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_report_to_posts_a_failure_in_chromes_shape(tmp_path, ca, leaf, ca_file, collector_http, redis_client):
    app, base = collector_http
    site = sites.create(redis_client, "Shop", [])
    uri = f"{base}/r/{site.site.id}/staple"
    expired = _staples(ca, leaf)["expired"]
    server = StapleServer(tmp_path / "srv", leaf, ca, expired)
    try:
        returncode, out = _run(server.target, "--servername", HOST, "--ca-file", ca_file, "--report-to", uri)
    finally:
        server.stop()
    assert returncode == 1 and out["reported"] == f"sent to {uri}: HTTP 200"
    [sample] = api(app.test_client(), site, f"/hosts/{HOST}/reports").get_json()["reports"]
    assert sample["response-status"] == "INVALID_DATE" and sample["shape"] == "chrome"
    assert sample["diagnosis"]["code"] == "stale_staple" and sample["user_agent"] == "staple-collector-probe"
    assert sample["ocsp"]["cert_status"] == "good" and sample["certificate"]["subject"] == f"CN={HOST}"

    good = StapleServer(tmp_path / "good", leaf, ca, pki.ocsp_response(leaf, ca))
    try:
        returncode, out = _run(good.target, "--servername", HOST, "--ca-file", ca_file, "--report-to", uri)
    finally:
        good.stop()
    assert returncode == 0 and out["reported"].startswith("not sent: the staple is valid")


# --- scheduled probes ------------------------------------------------------------------------


def _due_now(client, site_id: str, label: str) -> None:
    client.zadd(keys.probes_due(site_id), {label: 0})


def test_a_scheduled_probe_fires_when_stapling_stops_and_resolves_when_it_returns(
        tmp_path, ca, leaf, redis_client, redis_url, client, site):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "s"})
    worker = Worker(redis_client, app.config, b"s", name="prober")
    port = free_port()
    target = probe.Target("127.0.0.1", port, HOST)
    entry = probes.add(redis_client, site.site.id, target, 300)
    worker.refresh_sites()

    server = StapleServer(tmp_path / "a", leaf, ca, pki.ocsp_response(leaf, ca), port=port)
    try:
        assert worker.run_probes(wait=True) == 1
        assert worker.run_probes(wait=True) == 0  # not due again for 5 minutes
    finally:
        server.stop()
    [state] = api(client, site, "/probes").get_json()["probes"]
    assert state["status"] == "ok" and state["last_result"]["response_status"] == "PROVIDED"
    assert state["totals"] == {"ok": 1, "fail": 0, "unreachable": 0} and state["success_rate"] == 1.0
    detail = api(client, site, f"/hosts/{HOST}").get_json()
    assert detail["last_day"]["probes"] == {"ok": 1, "fail": 0} and detail["total"] == 0
    assert detail["probes"][0]["target"] == entry.label and detail["last_probe_at"]

    server = StapleServer(tmp_path / "b", leaf, ca, None, port=port)  # stapling stops
    try:
        _due_now(redis_client, site.site.id, entry.label)
        worker.run_probes(wait=True)
        assert redis_client.xlen(keys.outbox(site.site.id)) == 0  # one failure is not an incident yet
        _due_now(redis_client, site.site.id, entry.label)
        worker.run_probes(wait=True)
    finally:
        server.stop()
    [(kind, incident)] = [(f[b"type"].decode(), json.loads(f[b"incident"]))
                          for _id, f in redis_client.xrange(keys.outbox(site.site.id))]
    assert kind == "incident.firing" and incident["host"] == HOST
    assert incident["counts"]["by_source"] == {"probe": 2}
    assert incident["counts"]["by_diagnosis"] == {"no_staple": 2}
    [sample] = api(client, site, f"/hosts/{HOST}/reports?limit=1").get_json()["reports"]
    assert sample["source"] == "probe" and sample["response-status"] == "MISSING"
    assert api(client, site, "/probes").get_json()["probes"][0]["status"] == "failing"

    server = StapleServer(tmp_path / "c", leaf, ca, pki.ocsp_response(leaf, ca), port=port)  # it returns
    try:
        _due_now(redis_client, site.site.id, entry.label)
        worker.run_probes(wait=True)
    finally:
        server.stop()
    kinds = [f[b"type"].decode() for _id, f in redis_client.xrange(keys.outbox(site.site.id))]
    assert kinds == ["incident.firing", "incident.resolved"]
    state = api(client, site, "/probes").get_json()["probes"][0]
    assert state["status"] == "ok" and state["totals"] == {"ok": 2, "fail": 2, "unreachable": 0}
    points = api(client, site, f"/hosts/{HOST}/series?range=1h&step=1h").get_json()["points"]
    assert points[-1]["probes"] == {"ok": 2, "fail": 2} and points[-1]["total"] == 2


def test_a_target_nobody_probes_shows_as_stale_not_healthy(redis_client, site, client):
    entry = probes.add(redis_client, site.site.id, probe.Target("www.example.com", 443), 60)
    [state] = api(client, site, "/probes").get_json()["probes"]
    assert state["status"] == "pending" and state["last_probed_at"] is None
    redis_client.hset(keys.probe_state(site.site.id, entry.label), mapping={
        "last_at": 1, "last": json.dumps({"ok": True}), "ok": 1})
    [state] = api(client, site, "/probes").get_json()["probes"]
    assert state["status"] == "stale"


def test_an_unreachable_target_is_recorded_as_such(redis_client, redis_url, site, client, tmp_path):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "s",
                      "PROBE_TIMEOUT": "2s"})
    worker = Worker(redis_client, app.config, b"s")
    probes.add(redis_client, site.site.id, probe.Target("127.0.0.1", free_port(), HOST), 60)
    worker.refresh_sites()
    worker.run_probes(wait=True)
    [state] = api(client, site, "/probes").get_json()["probes"]
    assert state["status"] == "unreachable" and "cannot connect" in state["last_result"]["error"]
    assert redis_client.xlen(keys.outbox(site.site.id)) == 0


def test_site_probe_commands(tmp_path):
    data = tmp_path / "data"
    env = {**_env(), "STAPLE_DATA_DIR": str(data)}

    def cli(*args):
        return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=env)

    site_id = json.loads(cli("site", "create", "Shop", "--json").stdout)["id"]
    added = cli("site", "probe", site_id, "add", "127.0.0.1:8443", "--servername", "WWW.Example.com",
                "--every", "5m")
    assert added.returncode == 0 and "as www.example.com" in added.stdout
    refused = cli("site", "probe", site_id, "add", "127.0.0.1:8443")
    assert refused.returncode == 2 and "--servername" in refused.stderr
    listed = json.loads(cli("site", "probe", site_id, "list", "--json").stdout)
    assert [(r["target"], r["hostname"], r["every"], r["status"]) for r in listed] == [
        ("127.0.0.1:8443", "www.example.com", 300, "pending")]
    assert "127.0.0.1:8443" in cli("site", "probe", site_id, "list").stdout
    assert cli("site", "probe", site_id, "remove", "127.0.0.1:8443").returncode == 0
    assert cli("site", "probe", site_id, "remove", "127.0.0.1:8443").returncode == 1
    assert "No probe targets" in cli("site", "probe", site_id, "list").stdout
