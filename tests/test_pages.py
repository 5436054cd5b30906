"""Dashboard accounts and pages: sign-in, sessions, CSRF, tenant isolation, escaping, headers."""

from __future__ import annotations

import html
import json
import re
import subprocess

import pytest

from collector import sites, users
from tests import pki
from tests.conftest import post

PASSWORD = "correct horse battery"


def _csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def sign_in(client, email: str, password: str = PASSWORD, address: str = "192.0.2.10"):
    form = client.get("/login")
    return client.post("/login", data={"csrf": _csrf(form.data), "email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


@pytest.fixture
def owner(redis_client, site):
    users.create(redis_client, "owner@example.com", PASSWORD, sites=[site.site.id])
    return "owner@example.com"


def test_sign_in_shows_only_the_users_sites_and_sign_out_ends_the_session(client, redis_client, site, owner):
    other = sites.create(redis_client, "Someone else's shop", [])
    assert client.get("/sites").status_code == 302  # signed out: to the sign-in page
    response = sign_in(client, owner)
    assert response.status_code == 302 and response.headers["Location"].endswith("/sites")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/sites")
    assert page.status_code == 200
    assert b"Test site" in page.data and site.site.id.encode() in page.data
    assert other.site.id.encode() not in page.data and b"Someone else" not in page.data
    # An empty site explains how to start.
    assert b"Expect-Staple: max-age=31536000; report-uri=" in page.data
    sign_out = client.post("/logout", data={"csrf": _csrf(page.data)})
    assert sign_out.status_code == 302
    assert client.get("/sites").status_code == 302


def test_wrong_password_and_unknown_user_look_the_same(client, owner):
    wrong = sign_in(client, owner, "not the password at all")
    unknown = sign_in(client, "nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Wrong email or password." in wrong.data and b"Wrong email or password." in unknown.data


def test_forms_without_the_csrf_token_are_refused(client, owner):
    response = client.post("/login", data={"email": owner, "password": PASSWORD})
    assert response.status_code == 400
    sign_in(client, owner)
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 400
    assert client.get("/sites").status_code == 200  # still signed in


def test_signing_in_is_rate_limited(client, owner):
    answers = [sign_in(client, owner, "wrong password number x").status_code for _ in range(users.SIGNIN_PER_EMAIL)]
    assert set(answers) == {401}
    limited = sign_in(client, owner)  # even the right password, for now
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= users.SIGNIN_WINDOW


def test_changing_the_password_signs_other_sessions_out(app, owner):
    first, second = app.test_client(), app.test_client()
    sign_in(first, owner)
    sign_in(second, owner)
    page = first.get("/account/password")
    changed = first.post("/account/password", data={
        "csrf": _csrf(page.data), "current": PASSWORD, "new": "a new long password", "repeat": "a new long password"})
    assert changed.status_code == 200 and b"Password changed" in changed.data
    assert first.get("/sites").status_code == 200
    assert second.get("/sites").status_code == 302
    assert sign_in(app.test_client(), owner, "a new long password").status_code == 302


def test_an_admin_sees_every_site(client, redis_client, site):
    other = sites.create(redis_client, "Other", [])
    users.create(redis_client, "admin@example.com", PASSWORD, admin=True)
    sign_in(client, "admin@example.com")
    page = client.get("/sites").data
    assert site.site.id.encode() in page and other.site.id.encode() in page


def test_report_contents_are_shown_as_text_and_pages_send_a_strict_policy(client, site, owner, ca, leaf):
    # A hostname cannot carry markup (it is validated), so the attack surface is what
    # the page shows: prove the site name and any text are escaped.
    redis_client = client.application.extensions["redis"]
    redis_client.hset(f"es:{{{site.site.id}}}:site", "name", "<script>alert(1)</script>")
    report = pki.chrome_report(leaf, ca)
    assert post(client, site.site.id, report).status_code == 200
    sign_in(client, owner)
    page = client.get("/sites")
    assert b"<script>alert(1)</script>" not in page.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.data
    assert b"www.example.com" in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    # No inline script at all: the only script tag loads the packaged file.
    assert re.findall(rb"<script[^>]*>[^<]*</script>", page.data) == [
        b'<script src="/static/app.js" defer></script>'
    ]
    assert page.data.count(b"<script") == 1


def test_next_only_goes_to_a_path_on_this_site(client, owner):
    form = client.get("/login?next=//evil.example/x")
    response = client.post("/login?next=//evil.example/x",
                           data={"csrf": _csrf(form.data), "email": owner, "password": PASSWORD})
    assert response.headers["Location"].endswith("/sites")


def test_passwords_are_stored_as_argon2id_hashes(redis_client, owner):
    stored = redis_client.hget("es:user:owner@example.com", "pw").decode()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_user_create_reads_the_password_from_stdin_never_an_argument(tmp_path, redis_url, site):
    from tests.test_serve import CLI, _env

    env = _env(REDIS_URL=redis_url, STAPLE_DATA_DIR=str(tmp_path))
    created = subprocess.run([CLI, "user", "create", "cli@example.com", "--site", site.site.id],
                             input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    assert "cli@example.com" in created.stdout and PASSWORD not in created.stdout
    short = subprocess.run([CLI, "user", "create", "short@example.com"], input="short\n", env=env,
                           capture_output=True, text=True, timeout=60)
    assert short.returncode != 0 and "12 characters" in short.stderr
    listed = subprocess.run([CLI, "user", "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert '"cli@example.com"' in listed.stdout


# --- host and settings pages (Flask client; the browser tests drive the same pages in Chromium) ---

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options")


@pytest.fixture
def signed_in(client, owner):
    sign_in(client, owner)
    return client


def _host_page(client, site_id: str, host: str = "www.example.com", query: str = ""):
    return client.get(f"/sites/{site_id}/hosts/{host}{query}")


@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_host_page_shows_chart_diagnosis_must_staple_and_decoded_samples(signed_in, site, ca, backend, redis_client):
    assert (type(redis_client).__name__ == "RedisCluster") == (backend == "cluster")
    leaf = pki.make_leaf(ca, "www.example.com", must_staple=True)
    for address in ("192.0.2.1", "192.0.2.2"):
        assert post(signed_in, site.site.id, pki.chrome_report(leaf, ca),
                    environ_base={"REMOTE_ADDR": address}).status_code == 200
    page = _host_page(signed_in, site.site.id)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'data-points="24"' in body and 'data-total="2"' in body and 'class="s-missing"' in body
    assert 'data-diagnosis="no_staple"' in body and "ssl_stapling on" in body
    assert "Strict clients refuse to connect" in body  # Must-Staple
    assert 'badge-firing' in body  # a Must-Staple failure fires at once
    assert leaf.cert.serial_number.to_bytes(20, "big").hex().lstrip("0") in body.lower()
    for r, points in (("6h", 24), ("7d", 28), ("90d", 90), ("nonsense", 24)):
        shown = _host_page(signed_in, site.site.id, query=f"?range={r}").get_data(as_text=True)
        assert f'data-points="{points}"' in shown, r


def test_live_part_comes_alone_with_fragment(signed_in, site, ca):
    assert post(signed_in, site.site.id, pki.chrome_report(pki.make_leaf(ca), ca)).status_code == 200
    for url in ("/sites", f"/sites/{site.site.id}/hosts/www.example.com", f"/sites/{site.site.id}/settings"):
        whole, part = signed_in.get(url), signed_in.get(url + "?fragment=1")
        assert whole.status_code == part.status_code == 200, url
        assert part.headers["X-Fragment"] == "1" and "X-Fragment" not in whole.headers
        assert b"<html" in whole.data and b"<html" not in part.data and b"Updated <time" in part.data
        assert all(name in part.headers for name in SECURITY_HEADERS)


def test_other_sites_and_unknown_hosts_are_html_404s(signed_in, redis_client, site, ca):
    other = sites.create(redis_client, "Other", [])
    leaf = pki.make_leaf(ca)
    assert post(signed_in, other.site.id, pki.chrome_report(leaf, ca)).status_code == 200
    for url in (f"/sites/{other.site.id}/hosts/www.example.com", f"/sites/{other.site.id}/settings",
                f"/sites/{site.site.id}/hosts/www.example.com", f"/sites/{site.site.id}/hosts/not..a..host",
                "/sites/not-a-site-id/settings"):
        page = signed_in.get(url)
        assert page.status_code == 404, url
        assert page.mimetype == "text/html" and b"Not Found" in page.data
        assert all(name in page.headers for name in SECURITY_HEADERS)
    csrf = _csrf(signed_in.get(f"/sites/{site.site.id}/settings").data)
    assert signed_in.post(f"/sites/{other.site.id}/settings/alerts", data={"csrf": csrf}).status_code == 404


def test_settings_forms_need_the_csrf_token(signed_in, redis_client, site):
    refused = signed_in.post(f"/sites/{site.site.id}/settings/token", data={})
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert sites.site_for_token(redis_client, site.token) == site.site.id


@pytest.mark.parametrize("backend", ["single", "cluster"])
def test_host_patterns_are_checked_saved_and_used_by_the_report_endpoint(app, signed_in, redis_client, site, ca):
    url = f"/sites/{site.site.id}/settings"
    csrf = _csrf(signed_in.get(url).data)
    bad = signed_in.post(url + "/hosts", data={"csrf": csrf, "patterns": "shop.example\nex*ample.com"})
    assert bad.status_code == 400 and b"Not saved" in bad.data
    assert sites.get(redis_client, site.site.id).hosts == ()
    good = signed_in.post(url + "/hosts", data={"csrf": csrf, "patterns": "Shop.Example\n*.example.org\n"})
    assert good.status_code == 302
    assert sites.get(redis_client, site.site.id).hosts == ("shop.example", "*.example.org")
    assert b"Allowed hosts saved (2 patterns)" in signed_in.get(url).data
    fresh = create_app_like(app)  # a new worker: no cached copy of the site
    leaf = pki.make_leaf(ca, "www.example.com")
    assert post(fresh.test_client(), site.site.id, pki.chrome_report(leaf, ca)).status_code == 200
    stats = signed_in.get(url).get_data(as_text=True)
    assert "host_not_allowed" in stats


def create_app_like(app):
    from collector import create_app

    return create_app({k: app.config[k] for k in ("REDIS_URL", "REDIS_CLUSTER", "STAPLE_DATA_DIR", "SECRET_KEY")})


def test_alert_thresholds_are_checked_and_only_differences_from_the_defaults_kept(signed_in, redis_client, site):
    url = f"/sites/{site.site.id}/settings"
    csrf = _csrf(signed_in.get(url).data)
    form = {"csrf": csrf, "window": "10m", "min_reports": "5", "min_clients": "3", "resolve_after": "15m",
            "repeat": "0"}
    saved = signed_in.post(url + "/alerts", data=form)
    assert saved.status_code == 302
    assert sites.get(redis_client, site.site.id).alerts == {"window": 600, "min_clients": 3, "repeat": 0}
    wrong = signed_in.post(url + "/alerts", data={**form, "min_reports": "0", "window": "soon"})
    assert wrong.status_code == 400 and b"min reports" in wrong.data and b"window" in wrong.data
    assert sites.get(redis_client, site.site.id).alerts == {"window": 600, "min_clients": 3, "repeat": 0}
    back = signed_in.post(url + "/alerts", data={**form, "window": "5m", "min_clients": "2", "repeat": "4h"})
    assert back.status_code == 302 and sites.get(redis_client, site.site.id).alerts == {}


def test_webhook_to_a_private_address_is_refused_unless_allowed(signed_in, redis_client, site):
    url = f"/sites/{site.site.id}/settings"
    csrf = _csrf(signed_in.get(url).data)
    refused = signed_in.post(url + "/webhook", data={"csrf": csrf, "url": "http://127.0.0.1:9/hook", "format": "json"})
    assert refused.status_code == 400 and b"Not saved" in refused.data
    assert redis_client.hget(f"es:{{{site.site.id}}}:site", "webhook_url") is None


def test_send_test_is_logged_and_shown_on_the_host_page(tmp_path, redis_client, redis_url, redis_cluster, ca):
    from collector import create_app
    from tests.conftest import app_config
    from tests.receiver import Receiver

    app = create_app(app_config(redis_url, redis_cluster, tmp_path, WEBHOOK_ALLOW_PRIVATE="true"))
    client = app.test_client()
    shop = sites.create(redis_client, "Shop", ["www.example.com"])
    users.create(redis_client, "owner@example.com", PASSWORD, sites=[shop.site.id])
    assert post(client, shop.site.id, pki.chrome_report(pki.make_leaf(ca), ca)).status_code == 200
    sign_in(client, "owner@example.com")
    url = f"/sites/{shop.site.id}/settings"
    csrf = _csrf(client.get(url).data)
    receiver = Receiver()
    try:
        saved = client.post(url + "/webhook", data={"csrf": csrf, "url": receiver.url, "format": "slack"})
        assert saved.status_code == 200 and b"whsec_" in saved.data
        assert client.post(url + "/webhook/test", data={"csrf": csrf}).status_code == 302
        assert b"delivered (HTTP 200" in client.get(url).data
        assert "blocks" in receiver.wait_for(1)[0].json()  # the Slack shape
    finally:
        receiver.close()
    host_page = client.get(f"/sites/{shop.site.id}/hosts/www.example.com").get_data(as_text=True)
    assert 'class="outcome-delivered"' in host_page and "127.0.0.1" in host_page
    assert client.post(url + "/webhook/remove", data={"csrf": csrf}).status_code == 302
    assert b"No webhook" in client.get(url).data


def test_token_rotation_shows_the_new_token_once_and_stops_the_old(signed_in, redis_client, site):
    url = f"/sites/{site.site.id}/settings"
    rotated = signed_in.post(url + "/token", data={"csrf": _csrf(signed_in.get(url).data)})
    new_token = re.search(rb'id="api-token">(st_[^<]+)<', rotated.data).group(1).decode()
    assert sites.site_for_token(redis_client, site.token) is None
    assert sites.site_for_token(redis_client, new_token) == site.site.id
    assert new_token.encode() not in signed_in.get(url).data  # shown once
    assert redis_client.hget(f"es:{{{site.site.id}}}:site", "token_sha256").decode() == sites.hash_token(new_token)


def test_storage_down_is_a_503_page_with_retry_after(tmp_path):
    from collector import create_app
    from tests.conftest import free_port

    app = create_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "STAPLE_DATA_DIR": str(tmp_path),
                      "SECRET_KEY": "x", "REDIS_TIMEOUT": "1s"})
    client = app.test_client()
    form = client.get("/login")
    down = client.post("/login", data={"csrf": _csrf(form.data), "email": "a@example.com", "password": PASSWORD})
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert down.mimetype == "text/html" and b"Storage unavailable" in down.data


def test_the_test_command_posts_for_a_host_the_site_accepts(app, signed_in, redis_client, site):
    url = f"/sites/{site.site.id}/settings"
    csrf = _csrf(signed_in.get(url).data)
    assert signed_in.post(url + "/hosts", data={"csrf": csrf, "patterns": "*.example.org"}).status_code == 302
    command = re.search(rb'id="curl-command">([^<]+)<', signed_in.get(url).data).group(1).decode()
    body = re.search(r"--data '([^']+)'", html.unescape(command)).group(1)
    saved = sites.get(redis_client, site.site.id)
    assert saved.accepts(json.loads(body)["hostname"])  # www.example.org, not the apex
