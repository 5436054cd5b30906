"""The read API: tokens, tenant isolation, host summaries, series, samples, stats."""

from __future__ import annotations

import time

import pytest

from collector import sites
from tests import pki
from tests.conftest import api, assert_error_shape, on_both_backends, post

# Every test here runs on a single Redis and on a three-master Redis Cluster.
backend = pytest.fixture(params=["single", "cluster"])(on_both_backends)


@pytest.fixture
def loaded(client, site, ca, leaf):
    """A site with reports for two hosts from two clients."""
    for status, addr in [("MISSING", "192.0.2.1"), ("MISSING", "192.0.2.2"), ("INVALID_DATE", "192.0.2.1")]:
        report = pki.chrome_report(leaf, ca, response_status=status)
        assert post(client, site.site.id, report, environ_base={"REMOTE_ADDR": addr}).status_code == 200
    report = pki.chrome_report(leaf, ca, hostname="api.example.com", port=8443)
    assert post(client, site.site.id, report).status_code == 200
    return site


def test_token_is_required(client, loaded):
    path = f"/api/v1/sites/{loaded.site.id}/hosts"
    response = client.get(path)
    assert_error_shape(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error_shape(client.get(path, headers={"Authorization": "Bearer st_wrong"}), 401)
    assert_error_shape(client.get(path, headers={"Authorization": f"Basic {loaded.token}"}), 401)


@pytest.mark.parametrize("path", ["/hosts", "/hosts/www.example.com", "/hosts/www.example.com/series",
                                  "/hosts/www.example.com/reports", "/stats"])
def test_another_sites_token_gets_404_everywhere(client, redis_client, loaded, path):
    other = sites.create(redis_client, "Other tenant", [])
    response = client.get(f"/api/v1/sites/{loaded.site.id}{path}",
                          headers={"Authorization": f"Bearer {other.token}"})
    assert_error_shape(response, 404)
    # ... and its own token sees its own, empty, site.
    assert api(client, other, "/hosts").get_json()["hosts"] == []


def test_hosts_list_with_totals_status_counts_and_clients(client, loaded):
    body = api(client, loaded, "/hosts").get_json()
    assert body["site"] == loaded.site.id and body["total_hosts"] == 2
    by_name = {h["hostname"]: h for h in body["hosts"]}
    www = by_name["www.example.com"]
    for window in ("last_hour", "last_day", "last_week"):
        assert www[window]["total"] == 3
        assert www[window]["by_status"] == {"MISSING": 2, "INVALID_DATE": 1}
    assert www["distinct_clients"] == {"last_day": 2, "last_week": 2}
    # Per hour, oldest first: all in the current hour (or the one before, across an hour boundary).
    assert len(www["hourly_24h"]) == 24 and sum(www["hourly_24h"][-2:]) == 3 and sum(www["hourly_24h"]) == 3
    assert www["total"] == 3 and www["last_status"] == "INVALID_DATE"
    assert www["first_seen"] <= www["last_seen"]
    assert "ports" not in www
    # Most recent first.
    seen = [h["last_seen"] for h in body["hosts"]]
    assert seen == sorted(seen, reverse=True)


def test_hosts_pagination(client, loaded):
    first = api(client, loaded, "/hosts?limit=1").get_json()["hosts"]
    second = api(client, loaded, "/hosts?limit=1&offset=1").get_json()["hosts"]
    assert len(first) == len(second) == 1 and first[0]["hostname"] != second[0]["hostname"]
    assert_error_shape(api(client, loaded, "/hosts?limit=0"), 400, "invalid_parameter")
    assert_error_shape(api(client, loaded, "/hosts?limit=abc"), 400, "invalid_parameter")


def test_host_detail_has_ports(client, loaded):
    host = api(client, loaded, "/hosts/api.example.com").get_json()
    assert host["ports"] == {"8443": 1}
    assert host["last_hour"]["by_status"] == {"MISSING": 1}
    # Hostnames in URLs are normalised like reports.
    assert api(client, loaded, "/hosts/API.Example.COM").get_json()["hostname"] == "api.example.com"


def test_unknown_host_is_404(client, loaded):
    for path in ["/hosts/nope.example.com", "/hosts/nope.example.com/series",
                 "/hosts/nope.example.com/reports", "/hosts/192.0.2.1"]:
        assert_error_shape(api(client, loaded, path), 404)


def test_series_by_status(client, loaded):
    body = api(client, loaded, "/hosts/www.example.com/series?range=24h&step=1h").get_json()
    points = body["points"]
    assert len(points) == 24
    assert points[-1]["by_status"] == {"MISSING": 2, "INVALID_DATE": 1}
    assert sum(p["total"] for p in points) == 3
    assert points[0]["t"] < points[-1]["t"]
    minutes = api(client, loaded, "/hosts/www.example.com/series?range=1h&step=1m").get_json()["points"]
    assert len(minutes) == 60 and sum(p["total"] for p in minutes) == 3
    week = api(client, loaded, "/hosts/www.example.com/series?range=7d&step=1d").get_json()["points"]
    assert len(week) == 7 and week[-1]["total"] == 3
    default = api(client, loaded, "/hosts/www.example.com/series").get_json()
    assert (default["range"], default["step"], len(default["points"])) == ("24h", "1h", 24)


@pytest.mark.parametrize(
    "query",
    ["range=banana", "step=7m", "range=90d&step=1m", "range=5m&step=1h", "range=25h&step=6h",
     "range=91d&step=1d"],
)
def test_series_parameters_are_validated(client, loaded, query):
    assert_error_shape(api(client, loaded, f"/hosts/www.example.com/series?{query}"), 400, "invalid_parameter")


def test_reports_newest_first_with_limit(client, loaded):
    reports = api(client, loaded, "/hosts/www.example.com/reports?limit=2").get_json()["reports"]
    assert [r["response-status"] for r in reports] == ["INVALID_DATE", "MISSING"]
    assert all("received_at" in r and "id" in r for r in reports)
    assert_error_shape(api(client, loaded, "/hosts/www.example.com/reports?limit=5000"), 400)


def test_stats_today_and_total(client, loaded):
    post(client, loaded.site.id, b"{", content_type="application/json")
    body = api(client, loaded, "/stats").get_json()
    for window in ("total", "today"):
        assert body[window]["accepted"] == 4
        assert body[window]["rejected"] == {"total": 1, "reasons": {"invalid_json": 1}}
        assert body[window]["filtered"] == {"total": 0, "reasons": {}}


def test_tokens_are_stored_only_hashed(redis_client, loaded):
    for key in redis_client.scan_iter("*"):
        assert loaded.token.encode() not in redis_client.dump(key)
        assert loaded.token.encode() not in key


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "redis": "ok"}


def test_old_hosts_drop_out_of_the_index(client, redis_client, site, ca, leaf):
    from collector import keys
    post(client, site.site.id, pki.chrome_report(leaf, ca))
    # Pretend the host was last seen beyond retention; the next report prunes it.
    redis_client.zadd(keys.hosts(site.site.id), {"www.example.com": time.time() - 91 * 86400})
    post(client, site.site.id, pki.chrome_report(leaf, ca, hostname="new.example.com"))
    assert [h["hostname"] for h in api(client, site, "/hosts").get_json()["hosts"]] == ["new.example.com"]


def _clients_seen(app, site, ca, leaf, forwarded_for: list[str]) -> int:
    client = app.test_client()
    for address in forwarded_for:
        response = client.post(f"/r/{site.site.id}/staple", json=pki.chrome_report(leaf, ca),
                               headers={"X-Forwarded-For": address})
        assert response.status_code == 200
    return api(client, site, "/hosts/www.example.com").get_json()["distinct_clients"]["last_day"]


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(redis_client, redis_url, tmp_path, site, ca, leaf):
    from collector import create_app
    base = {"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "s"}
    untrusted = create_app(base)
    assert _clients_seen(untrusted, site, ca, leaf, ["198.51.100.1", "198.51.100.2"]) == 1
    redis_client.flushall()
    trusted_site = sites.create(redis_client, "Behind a proxy", [])
    trusted = create_app({**base, "TRUSTED_PROXIES": "1"})
    assert _clients_seen(trusted, trusted_site, ca, leaf, ["198.51.100.1", "198.51.100.2"]) == 2


def test_generated_secret_key_is_kept_private_and_stable(redis_url, tmp_path):
    from collector import create_app
    first = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": ""})
    second = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": ""})
    assert first.secret_key == second.secret_key and len(first.secret_key) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]
