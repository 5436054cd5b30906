"""The report endpoint: shapes, media types, status codes, accounting, storage."""

from __future__ import annotations

import json

import pytest
import redis

from collector import create_app, keys, redisconn, sites
from tests import pki
from tests.conftest import PEERS, api, assert_error_shape, on_both_backends, post

# Every test here runs on a single Redis and on a three-master Redis Cluster.
backend = pytest.fixture(params=["single", "cluster"])(on_both_backends)


def _stats(client, site):
    return api(client, site, "/stats").get_json()["total"]


def _hosts(client, site):
    return api(client, site, "/hosts").get_json()["hosts"]


def test_chrome_shaped_report_from_real_certificates_is_accepted_and_shown(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca, response_status="MISSING")
    response = post(client, site.site.id, report)
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == "*"

    [host] = _hosts(client, site)
    assert host["hostname"] == "www.example.com"
    assert host["last_hour"]["by_status"] == {"MISSING": 1}
    assert host["last_day"]["total"] == 1 and host["last_week"]["total"] == 1
    assert host["distinct_clients"] == {"last_day": 1, "last_week": 1}
    [sample] = api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]
    assert sample["served-certificate-chain"] == [leaf.pem, ca.pem]
    assert sample["shape"] == "chrome"
    assert sample["date-time"] == report["date-time"]


def test_draft_shape_with_its_media_type_is_accepted(client, site, ca, leaf):
    inner = pki.chrome_report(leaf, ca, response_status="PROVIDED", cert_status="REVOKED",
                              ocsp_der=pki.ocsp_response(leaf, ca, status="revoked"))
    inner["effective-expiration-date"] = "2027-01-01T00:00:00Z"
    response = post(client, site.site.id, {"expect-staple-report": inner},
                    content_type="application/expect-staple-report")
    assert response.status_code == 200
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["last_hour"]["by_status"] == {"PROVIDED": 1}
    assert host["last_hour"]["by_cert_status"] == {"REVOKED": 1}
    assert host["ports"] == {"443": 1}
    [sample] = api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]
    assert sample["shape"] == "draft"
    assert sample["ocsp-response"] == inner["ocsp-response"]


@pytest.mark.parametrize("suffix", ["/reportOnly", "/enforce"])
def test_report_uri_com_suffixes_are_accepted(client, site, ca, leaf, suffix):
    response = post(client, site.site.id, pki.chrome_report(leaf, ca), suffix=suffix)
    assert response.status_code == 200
    [sample] = api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]
    assert sample["endpoint"] == suffix[1:]


def test_other_suffix_is_404(client, site, ca, leaf):
    assert_error_shape(post(client, site.site.id, pki.chrome_report(leaf, ca), suffix="/other"), 404)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\"",
     "application/expect-staple-report"],
)
def test_media_types_with_parameters(client, site, ca, leaf, content_type):
    assert post(client, site.site.id, pki.chrome_report(leaf, ca), content_type=content_type).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1",
     "application/expect-ct-report+json", ""],
)
def test_unsupported_media_type_is_415_and_counted(client, site, ca, leaf, content_type):
    response = post(client, site.site.id, pki.chrome_report(leaf, ca), content_type=content_type)
    assert_error_shape(response, 415, "unsupported_media_type")
    assert _stats(client, site)["rejected"]["reasons"] == {"unsupported_media_type": 1}
    assert _hosts(client, site) == []


def test_unknown_site_is_404(client, site, ca, leaf):
    assert_error_shape(post(client, "0123456789abcdef", pki.chrome_report(leaf, ca)), 404, "unknown_site")
    assert_error_shape(post(client, "not-a-site-id", pki.chrome_report(leaf, ca)), 404, "unknown_site")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, site, method):
    response = client.open(f"/r/{site.site.id}/staple", method=method)
    assert_error_shape(response, 405)
    assert "POST" in response.headers["Allow"]


def test_cors_preflight(client, site):
    response = client.options(
        f"/r/{site.site.id}/staple",
        headers={"Origin": "null", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"


def test_body_over_the_limit_is_413_before_parsing(redis_client, redis_url, tmp_path, site):
    app = create_app({"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "MAX_REPORT_BYTES": "2048"})
    client = app.test_client()
    # Not even JSON: the size decides before anything is parsed.
    response = post(client, site.site.id, b"x" * 4096)
    assert_error_shape(response, 413, "too_large")
    assert _stats(client, site)["rejected"]["reasons"] == {"too_large": 1}


def test_default_limit_is_64_kib(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca)
    report["padding"] = "x" * (64 * 1024)
    assert_error_shape(post(client, site.site.id, report), 413, "too_large")


def test_peer_fixtures_are_accepted(client, site):
    for name, content_type in [
        ("sentry_expect_staple_raw_report.json", "application/expect-staple-report"),
        ("relay_expect_staple_input.json", "application/json"),
    ]:
        response = post(client, site.site.id, (PEERS / name).read_bytes(), content_type=content_type)
        assert response.status_code == 200, (name, response.data)
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["last_hour"]["by_status"] == {"ERROR_RESPONSE": 2}
    assert host["last_hour"]["by_cert_status"] == {"REVOKED": 2}


@pytest.mark.parametrize(
    "name, words",
    [("relay_expect_ct_input.json", "Expect-CT"), ("relay_hpkp_input.json", "HPKP")],
)
def test_peer_reports_of_other_kinds_are_rejected_clearly(client, site, name, words):
    response = post(client, site.site.id, (PEERS / name).read_bytes())
    error = assert_error_shape(response, 400, "not_expect_staple")
    assert words in error["message"]
    assert _stats(client, site)["rejected"]["reasons"] == {"not_expect_staple": 1}


def test_reporting_api_batch_of_other_types_is_rejected(client, site):
    body = (PEERS / "w3c_reporting_api_sample.json").read_bytes()
    error = assert_error_shape(
        post(client, site.site.id, body, content_type="application/reports+json"), 400, "not_expect_staple"
    )
    assert "None of the 3 entries" in error["message"]
    assert _stats(client, site)["rejected"]["reasons"] == {"not_expect_staple": 3}


def test_reporting_api_batch_ingests_staple_entries_and_counts_the_rest(client, site, ca, leaf):
    typed = {"type": "expect-staple", "age": 1, "url": "https://www.example.com/",
             "body": pki.chrome_report(leaf, ca, response_status="MISSING")}
    sniffed = {"type": "something", "age": 2, "url": "https://www.example.com/",
               "body": {"expect-staple-report": pki.chrome_report(leaf, ca, response_status="INVALID_DATE")}}
    other = json.loads((PEERS / "w3c_reporting_api_sample.json").read_text())[0]
    invalid = {"type": "expect-staple", "body": {"hostname": "www.example.com", "response-status": "NOPE"}}
    response = post(client, site.site.id, [typed, sniffed, other, invalid],
                    content_type="application/reports+json")
    assert response.status_code == 200
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["last_hour"]["by_status"] == {"MISSING": 1, "INVALID_DATE": 1}
    stats = _stats(client, site)
    assert stats["accepted"] == 2
    assert stats["rejected"]["reasons"] == {"not_expect_staple": 1, "invalid_report": 1}


def test_batch_must_be_an_array_and_bounded(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca)
    assert_error_shape(post(client, site.site.id, report, content_type="application/reports+json"),
                       400, "invalid_batch")
    small = {"hostname": "www.example.com", "response-status": "MISSING"}
    entries = [{"type": "expect-staple", "body": small}] * 101
    assert_error_shape(post(client, site.site.id, entries, content_type="application/reports+json"),
                       400, "invalid_batch")
    assert_error_shape(post(client, site.site.id, [report]), 400, "invalid_report")


@pytest.mark.parametrize(
    "field, value",
    [
        ("hostname", "192.0.2.1"),
        ("hostname", "[2001:db8::1]"),
        ("hostname", "exa mple.com"),
        ("hostname", "-bad-.example"),
        ("hostname", "a" * 64 + ".example"),
        ("hostname", 42),
        ("hostname", ""),
        ("port", 0),
        ("port", 70000),
        ("port", "443"),
        ("port", True),
        ("port", 443.5),
        ("response-status", "BROKEN"),
        ("response-status", None),
        ("cert-status", "MAYBE"),
        ("date-time", "yesterday"),
        ("date-time", "2018-03-01 12:34"),
        ("date-time", 1519907696),
        ("effective-expiration-date", "2018-13-01T00:00:00Z"),
        ("ocsp-response", "not base64!!"),
        ("ocsp-response", 12),
        ("served-certificate-chain", "-----BEGIN CERTIFICATE-----"),
        ("served-certificate-chain", [1, 2]),
        ("validated-certificate-chain", ["x"] * 11),
    ],
)
def test_each_bad_field_is_named(client, site, ca, leaf, field, value):
    report = pki.chrome_report(leaf, ca)
    report[field] = value
    error = assert_error_shape(post(client, site.site.id, report), 400, "invalid_report")
    assert field in error["fields"], error
    assert _stats(client, site)["rejected"]["reasons"] == {"invalid_report": 1}


def test_several_bad_fields_are_all_named(client, site):
    error = assert_error_shape(post(client, site.site.id, {"port": -1}), 400, "invalid_report")
    assert set(error["fields"]) == {"hostname", "response-status", "port"}


@pytest.mark.parametrize(
    "raw, expected",
    [("WWW.Example.COM.", "www.example.com"), ("Bücher.example", "xn--bcher-kva.example"),
     ("xn--bcher-kva.example", "xn--bcher-kva.example")],
)
def test_hostnames_are_normalised(client, site, ca, leaf, raw, expected):
    assert post(client, site.site.id, pki.chrome_report(leaf, ca, hostname=raw)).status_code == 200
    assert [h["hostname"] for h in _hosts(client, site)] == [expected]


@pytest.mark.parametrize(
    "value",
    ["2018-03-01T12:34:56Z", "2018-03-01T12:34:56.789Z", "2018-03-01T12:34:56.123456789+02:00",
     "2018-03-01t12:34:56-05:30"],
)
def test_rfc3339_with_and_without_fraction(client, site, ca, leaf, value):
    report = pki.chrome_report(leaf, ca)
    report["date-time"] = value
    assert post(client, site.site.id, report).status_code == 200


def test_pem_armoured_ocsp_response_is_accepted(client, site, ca, leaf):
    der = pki.ocsp_response(leaf, ca)
    armoured = "-----BEGIN OCSP RESPONSE-----\n" + pki.b64(der) + "\n-----END OCSP RESPONSE-----\n"
    report = pki.chrome_report(leaf, ca, response_status="INVALID_DATE")
    report["ocsp-response"] = armoured
    assert post(client, site.site.id, report).status_code == 200
    [sample] = api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]
    assert sample["ocsp-response"] == pki.b64(der)


def test_unknown_extra_keys_are_tolerated(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca)
    report["future-field"] = {"anything": [1, 2]}
    assert post(client, site.site.id, report).status_code == 200


def test_filtered_hosts_are_counted_not_stored(redis_client, client, ca, leaf):
    new = sites.create(redis_client, "Patterns", ["example.com", "*.example.com"])
    for hostname in ["example.com", "www.example.com", "deep.www.example.com"]:
        response = post(client, new.site.id, pki.chrome_report(leaf, ca, hostname=hostname))
        assert response.headers["X-Report-Outcome"] == "accepted"
    for hostname in ["example.org", "notexample.com", "example.com.evil.test"]:
        response = post(client, new.site.id, pki.chrome_report(leaf, ca, hostname=hostname))
        assert response.status_code == 200
        assert response.headers["X-Report-Outcome"] == "filtered"
    assert sorted(h["hostname"] for h in _hosts(client, new)) == [
        "deep.www.example.com", "example.com", "www.example.com"]
    stats = _stats(client, new)
    assert stats["accepted"] == 3
    assert stats["filtered"] == {"total": 3, "reasons": {"host_not_allowed": 3}}
    assert not redis_client.exists(keys.host_meta(new.site.id, "example.org"))


MALFORMED = [
    b"", b"{", b"null", b"true", b"42", b'"string"', b"[]", b"{}", b"[[]]", b"\xff\xfe\x00",
    b'{"hostname": NaN, "response-status": "MISSING"}', b'{"hostname": Infinity}',
    b"[" * 100000 + b"]" * 100000, b'{"a":' * 50000 + b"1" + b"}" * 50000,
    b'{"expect-staple-report": null}', b'{"expect-staple-report": []}', b'{"expect-staple-report": "x"}',
    b'{"hostname": {"$gt": ""}, "response-status": ["MISSING"]}',
    b'{"hostname": "a.example", "response-status": "MISSING", "served-certificate-chain": {"a": 1}}',
    b'{"hostname": "a.example", "response-status": "MISSING", "port": 1e400}',
    b'{"hostname": "a.example", "response-status": "MISSING", "port": 99999999999999999999999}',
    b'{"hostname": "\\ud800", "response-status": "MISSING"}',
    b'{"hostname": "a\\u0000b", "response-status": "MISSING"}',
    b'{"hostname": "' + b"a." * 200 + b'example", "response-status": "MISSING"}',
    b'{"hostname": "xn--zz", "response-status": "MISSING"}',
    b'{"hostname": "a.example", "response-status": "MISSING", "ocsp-response": "===="}',
    b'{"hostname": "a.example", "response-status": "MISSING", "date-time": "9999-99-99T99:99:99Z"}',
    b'{"hostname": "a.example", "response-status": "MISSING", "date-time": "2018-02-30T10:00:00Z"}',
    '{"hostname": "ä.example\u200d", "response-status": "MISSING"}'.encode(),
    b'[{"type": "expect-staple"}]', b'[{"type": "expect-staple", "body": 5}]', b"[1, 2, 3]",
]


@pytest.mark.parametrize("content_type", ["application/json", "application/reports+json",
                                          "application/expect-staple-report"])
def test_malformed_bodies_get_a_4xx_in_the_error_shape_and_never_a_500(client, site, ca, leaf, content_type):
    assert post(client, site.site.id, pki.chrome_report(leaf, ca)).status_code == 200
    before = api(client, site, "/hosts/www.example.com").get_json()
    for body in MALFORMED:
        response = post(client, site.site.id, body, content_type=content_type)
        assert 400 <= response.status_code < 500, (body[:80], response.status_code)
        assert_error_shape(response, response.status_code)
    after = api(client, site, "/hosts/www.example.com").get_json()
    assert after["last_hour"] == before["last_hour"] and after["total"] == before["total"]
    assert _stats(client, site)["rejected"]["total"] >= len(MALFORMED)


def test_identical_reports_from_one_client_are_stored_once_and_counted_every_time(client, site, ca, leaf):
    report = pki.chrome_report(leaf, ca)
    for _ in range(3):
        assert post(client, site.site.id, report).status_code == 200
    report["date-time"] = "2030-01-01T00:00:00Z"  # a later failure, otherwise identical
    assert post(client, site.site.id, report).status_code == 200
    other = post(client, site.site.id, report, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other.status_code == 200
    host = api(client, site, "/hosts/www.example.com").get_json()
    assert host["last_hour"]["total"] == 5
    assert host["distinct_clients"]["last_day"] == 2
    assert len(api(client, site, "/hosts/www.example.com/reports").get_json()["reports"]) == 2


def test_client_addresses_are_never_stored_raw(redis_client, client, site, ca, leaf):
    post(client, site.site.id, pki.chrome_report(leaf, ca), environ_base={"REMOTE_ADDR": "203.0.113.99"})
    for key in redis_client.scan_iter("*"):
        kind = redis_client.type(key)
        dump = redis_client.dump(key)
        assert b"203.0.113.99" not in dump, key
        if kind == b"stream":
            assert b"203.0.113.99" not in json.dumps(
                [(i.decode(), {k.decode(): v.decode() for k, v in d.items()})
                 for i, d in redis_client.xrange(key)]).encode()


def _node(redis_client, site_id: str) -> redis.Redis:
    """A client of its own for the Redis holding the site (on a cluster, the slot's primary)."""
    kwargs = redisconn.site_client(redis_client, site_id).connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"])


def test_one_report_is_one_redis_round_trip(app, redis_client, site, ca, leaf):
    client = app.test_client()
    report = pki.chrome_report(leaf, ca)
    assert post(client, site.site.id, report).status_code == 200  # warms the site cache and script
    # On a cluster, the primary that owns the site's slot sees every command.
    marker = _node(redis_client, site.site.id)
    marker.ping()  # its connection handshake happens before the monitor starts
    with _node(redis_client, site.site.id).monitor() as monitor:
        report["port"] = 8443
        assert post(client, site.site.id, report).status_code == 200
        marker.echo("end-of-report")
        commands = []
        for event in monitor.listen():
            if "end-of-report" in event["command"]:
                break
            commands.append(event)
    top_level = [c for c in commands if c["client_address"] != "lua"]
    assert [c["command"].split()[0] for c in top_level] == ["EVALSHA"], commands
    assert len(commands) > 10  # the script itself did the writes


def test_batch_is_one_round_trip_too(app, redis_client, site, ca, leaf):
    client = app.test_client()
    post(client, site.site.id, pki.chrome_report(leaf, ca))
    entries = [{"type": "expect-staple", "body": pki.chrome_report(leaf, ca, hostname=f"h{i}.example.com")}
               for i in range(3)] + [{"type": "other", "body": {}}]
    marker = _node(redis_client, site.site.id)
    marker.ping()
    with _node(redis_client, site.site.id).monitor() as monitor:
        assert post(client, site.site.id, entries, content_type="application/reports+json").status_code == 200
        marker.echo("end-of-report")
        top_level = []
        for event in monitor.listen():
            if "end-of-report" in event["command"]:
                break
            if event["client_address"] != "lua":
                top_level.append(event)
    # redis-py sends a pipeline as one write; MONITOR lists its commands from one client.
    # Three reports and one call counting the ignored entry.
    assert [c["command"].split()[0] for c in top_level] == ["EVALSHA"] * 4
    assert len({(c["client_address"], c["client_port"]) for c in top_level}) == 1


def test_redis_down_is_503_with_retry_after(tmp_path, ca, leaf):
    from tests.conftest import free_port
    app = create_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "STAPLE_DATA_DIR": str(tmp_path)})
    client = app.test_client()
    response = post(client, "0123456789abcdef", pki.chrome_report(leaf, ca))
    assert_error_shape(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert_error_shape(ready, 503)
    assert client.get("/healthz").status_code == 200
