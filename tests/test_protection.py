"""Protection of the report endpoint: rate limits per client and per site, the hostname cap."""

from __future__ import annotations

import pytest

from collector import alerts, create_app, keys, sites, store
from tests import pki
from tests.conftest import api, app_config, assert_error_shape, on_both_backends, post

# Every test here runs on a single Redis and on a three-master Redis Cluster.
backend = pytest.fixture(params=["single", "cluster"])(on_both_backends)


def _app(redis_url, redis_cluster, tmp_path, **settings):
    return create_app(app_config(redis_url, redis_cluster, tmp_path, **settings))


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def _stats(web, site) -> dict:
    return api(web, site, "/stats").get_json()["total"]


def test_a_client_over_its_limit_gets_429_and_others_go_on(redis_url, redis_cluster, redis_client, tmp_path,
                                                           site, ca, leaf):
    web = _app(redis_url, redis_cluster, tmp_path, RATE_LIMIT_CLIENT="5", RATE_LIMIT_WINDOW="1h").test_client()
    report = pki.chrome_report(leaf, ca)
    statuses = [post(web, site.site.id, report, **_from("198.51.100.7")).status_code for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    limited = post(web, site.site.id, report, **_from("198.51.100.7"))
    error = assert_error_shape(limited, 429, "rate_limited")
    assert "retry" in error["message"].lower()
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert limited.headers["Access-Control-Allow-Origin"] == "*"
    # Another client of the same site is not affected.
    assert post(web, site.site.id, report, **_from("198.51.100.8")).status_code == 200

    totals = _stats(web, site)
    assert totals["accepted"] == 6
    assert totals["rejected"]["reasons"] == {"rate_limited": 4}
    # Nothing stored was touched by the refused reports.
    host = api(web, site, "/hosts/www.example.com").get_json()
    assert host["total"] == 6
    # The counter expires with its window, so an idle client leaves nothing behind.
    counters = list(redis_client.scan_iter(match=f"es:{{{site.site.id}}}:rl:c:*", count=1000))
    assert len(counters) == 2  # one per client, named by the salted hash, never the address
    assert all(b"198.51.100" not in k for k in counters)
    assert all(0 < redis_client.ttl(k) <= 3600 for k in counters)


def test_malformed_requests_count_against_the_client_limit(redis_url, redis_cluster, tmp_path, site, ca, leaf):
    web = _app(redis_url, redis_cluster, tmp_path, RATE_LIMIT_CLIENT="3", RATE_LIMIT_WINDOW="1h").test_client()
    answers = [post(web, site.site.id, b"{not json", **_from("203.0.113.5")).status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]
    # The same client's valid report is now limited too: junk used its budget.
    assert post(web, site.site.id, pki.chrome_report(leaf, ca), **_from("203.0.113.5")).status_code == 429
    totals = _stats(web, site)
    assert totals["rejected"]["reasons"] == {"invalid_json": 3, "rate_limited": 3}


def test_the_site_limit_holds_across_clients_and_across_web_workers(redis_url, redis_cluster, tmp_path, site,
                                                                   ca, leaf):
    # Two app instances stand for two gunicorn workers (or two hosts) sharing the Redis.
    settings = {"RATE_LIMIT_CLIENT": "0", "RATE_LIMIT_SITE": "10", "RATE_LIMIT_WINDOW": "1h"}
    first = _app(redis_url, redis_cluster, tmp_path, **settings).test_client()
    second = _app(redis_url, redis_cluster, tmp_path, **settings).test_client()
    report = pki.chrome_report(leaf, ca)
    statuses = [post((first, second)[i % 2], site.site.id, report, **_from(f"192.0.2.{i}")).status_code
                for i in range(14)]
    assert statuses == [200] * 10 + [429] * 4
    assert _stats(first, site)["accepted"] == 10
    # Another site has a budget of its own.
    other = sites.create(first.application.extensions["redis"], "Other", [])
    assert post(first, other.site.id, report, **_from("192.0.2.1")).status_code == 200


def test_a_batch_is_limited_report_by_report(redis_url, redis_cluster, tmp_path, site, ca, leaf):
    web = _app(redis_url, redis_cluster, tmp_path, RATE_LIMIT_CLIENT="3", RATE_LIMIT_WINDOW="1h").test_client()
    entries = [{"type": "expect-staple", "body": pki.chrome_report(leaf, ca, hostname=f"h{i}.example.com")}
               for i in range(5)]
    response = post(web, site.site.id, entries, content_type="application/reports+json", **_from("192.0.2.9"))
    assert response.status_code == 200  # some went in
    totals = _stats(web, site)
    assert totals["accepted"] == 3
    assert totals["rejected"]["reasons"] == {"rate_limited": 2}
    again = post(web, site.site.id, entries, content_type="application/reports+json", **_from("192.0.2.9"))
    assert_error_shape(again, 429, "rate_limited")


def test_a_flood_of_random_hostnames_stops_at_the_cap(redis_url, redis_cluster, redis_client, tmp_path, site,
                                                      ca, leaf):
    web = _app(redis_url, redis_cluster, tmp_path, MAX_HOSTS_PER_SITE="4", RATE_LIMIT_CLIENT="0").test_client()
    answers = []
    for i in range(30):
        report = pki.chrome_report(leaf, ca, hostname=f"x{i}.example.com")
        answers.append(post(web, site.site.id, report, **_from(f"192.0.2.{i}")))
    assert [a.status_code for a in answers[:4]] == [200] * 4
    for refused in answers[4:]:
        assert_error_shape(refused, 422, "too_many_hosts")
    # Hosts already tracked still take reports.
    assert post(web, site.site.id, pki.chrome_report(leaf, ca, hostname="x0.example.com")).status_code == 200
    listed = api(web, site, "/hosts").get_json()
    assert sorted(h["hostname"] for h in listed["hosts"]) == [f"x{i}.example.com" for i in range(4)]
    assert _stats(web, site)["rejected"]["reasons"] == {"too_many_hosts": 26}
    # Refused hostnames left no keys behind.
    stored = {k.decode() for k in redis_client.scan_iter(match=f"es:{{{site.site.id}}}:h:*", count=10000)}
    assert not [k for k in stored if any(f":h:x{i}.example.com:" in k for i in range(4, 30))]


def test_probes_are_not_rate_limited(redis_client, site, ca, leaf):
    # The worker's scheduled probes write through the same script; the limits are for reports.
    limits = store.Limits(client=1, site=1, window=3600, max_hosts=0)
    outcome = store.Outcomes(accepted=[
        store.Accepted(host="www.example.com", port=443, response_status="MISSING", cert_status=None,
                       diagnosis="no_staple", severity="warning", must_staple=False, sample={"n": i},
                       source="probe") for i in range(3)])
    policy = alerts.Policy(window=300, min_reports=5, min_clients=2, resolve_after=900, repeat=14400)
    codes = store.write(redis_client, site.site.id, outcome, "probe", 1_800_000_000, store.Retention(
        minutes=3600, hours=86400, samples=10, dedup=0), policy, limits)
    assert codes == [1, 1, 1]
    assert int(redis_client.hget(keys.host_meta(site.site.id, "www.example.com"), "total")) == 3
