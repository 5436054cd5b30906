"""Dashboard accounts and pages: sign-in, sessions, CSRF, tenant isolation, escaping, headers."""

from __future__ import annotations

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
