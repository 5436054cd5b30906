"""The dashboard's pages: sign-in, sign-out, password change, the sites overview.

The per-site pages (host, settings) are in ``collector.pages.site_pages``; the
SVG charts in ``collector.pages.charts``.

Server-rendered Jinja templates (autoescaped: report contents are attacker-
controlled and only ever reach a page as text). Sessions are Flask's signed
cookies (``HttpOnly``, ``SameSite=Lax``, ``Secure`` when PUBLIC_URL is https)
holding the user's email, the user's session version (a password change signs
every session out) and a CSRF token that every form must send back. Pages carry
a strict Content-Security-Policy: no inline script, nothing from elsewhere.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from collector import alerts, errors, sites, store, users
from collector.pages import charts

bp = Blueprint("pages", __name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATE_ORDER = {"firing": 0, "resolved": 1, "ok": 2}
OVERVIEW_HOSTS = 200  # per site: the most recently reported ones


def _redis() -> Any:
    return current_app.extensions["redis"]


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


def current_user() -> users.User | None:
    if "user" in g:
        return g.user  # type: ignore[no-any-return]
    user = None
    email = session.get("email")
    if email:
        found = users.get(_redis(), email)
        if found and session.get("sv") == found.session_version:
            user = found
    g.user = user
    return user


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("pages.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
        abort(400, description="The form expired or came from elsewhere; reload the page and try again.")


def fragment_or_page(page: str, fragment: str, **context: Any) -> Response:
    """The whole page, or with ``?fragment=1`` only its live part (for in-page refresh)."""
    if request.args.get("fragment") == "1":
        response = Response(render_template(fragment, **context))
        response.headers["X-Fragment"] = "1"
        return response
    return Response(render_template(page, **context))


@bp.errorhandler(HTTPException)
def _page_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    body = render_template("error.html", status=status, title=exc.name, message=exc.description)
    return Response(body, status=status)


@bp.errorhandler(redis.exceptions.RedisError)
@bp.errorhandler(redis.exceptions.RedisClusterException)
def _storage_error(exc: Exception) -> Response:
    from collector import metrics  # not at import: see collector.metrics

    metrics.REDIS_ERRORS.labels("web").inc()
    body = render_template("error.html", status=503, title="Storage unavailable",
                           message="The collector cannot reach its storage right now. Try again in a moment.")
    return Response(body, status=503, headers={"Retry-After": str(errors.REDIS_RETRY_AFTER)})


@bp.app_template_filter("when")
def _when(iso_text: Any) -> str:
    """``2026-11-22T12:00:05Z`` as ``2026-11-22 12:00:05 UTC`` (the machine form stays in datetime=)."""
    if not iso_text:
        return "–"
    return str(iso_text).replace("T", " ").replace("Z", " UTC")


@bp.app_template_filter("status_class")
def _status_class(status: Any) -> str:
    return charts.status_class(str(status))


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "user": current_user()}


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never an absolute or protocol-relative URL.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("pages.overview")


@bp.get("/")
def index() -> Response:
    return redirect(url_for("pages.overview" if current_user() else "pages.login"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    status = 200
    headers: dict[str, str] = {}
    if request.method == "POST":
        _check_csrf()
        email = request.form.get("email", "")[:254]
        password = request.form.get("password", "")
        client_hash = store.client_hash(current_app.extensions["client_salt"], request.remote_addr or "unknown")
        allowed, retry_after = users.signin_allowed(_redis(), email, client_hash, int(time.time()))
        if not allowed:
            error = "Too many sign-in attempts. Wait a few minutes and try again."
            status, headers = 429, {"Retry-After": str(retry_after)}
        else:
            user = users.authenticate(_redis(), email, password)
            if user is None:
                error = "Wrong email or password."
                status = 401
            else:
                session.clear()
                session["email"] = user.email
                session["sv"] = user.session_version
                session.permanent = True
                csrf_token()
                return redirect(_safe_next(request.args.get("next")))
    body = render_template("login.html", error=error, next=request.args.get("next", ""))
    return Response(body, status=status, headers=headers)


@bp.post("/logout")
def logout() -> Response:
    _check_csrf()
    session.clear()
    return redirect(url_for("pages.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    user = current_user()
    assert user is not None
    message, error, status = None, None, 200
    if request.method == "POST":
        _check_csrf()
        if users.authenticate(_redis(), user.email, request.form.get("current", "")) is None:
            error, status = "The current password is wrong.", 400
        elif request.form.get("new", "") != request.form.get("repeat", ""):
            error, status = "The new passwords differ.", 400
        else:
            try:
                users.set_password(_redis(), user.email, request.form.get("new", ""))
            except users.UserError as exc:
                error, status = f"Not changed: {exc}.", 400
            else:
                refreshed = users.get(_redis(), user.email)
                assert refreshed is not None
                session["sv"] = refreshed.session_version  # this session stays signed in
                message = "Password changed. Other sessions are signed out."
    return Response(render_template("password.html", message=message, error=error), status=status)


def visible_sites(user: users.User) -> list[sites.Site]:
    everything = sites.list_all(_redis())
    return [s for s in everything if user.can_see(s.id)]


@bp.get("/sites")
@login_required
def overview() -> Response:
    user = current_user()
    assert user is not None
    now = int(time.time())
    shown = []
    for site in visible_sites(user):
        hosts = store.list_hosts(_redis(), site.id, now, OVERVIEW_HOSTS, 0)
        states = alerts.host_states(_redis(), site.id, [h["hostname"] for h in hosts])
        for host in hosts:
            host["state"] = states.get(host["hostname"], "ok")
            host["spark"] = charts.sparkline(host["hourly_24h"])
        hosts.sort(key=lambda h: (STATE_ORDER.get(h["state"], 3), -(h["last_day"]["total"])))
        uri = sites.report_uri(current_app.config["PUBLIC_URL"], site.id)
        total = store.host_count(_redis(), site.id) if len(hosts) >= OVERVIEW_HOSTS else len(hosts)
        shown.append({"site": site, "hosts": hosts, "report_uri": uri, "total_hosts": total,
                      "header": sites.header_line(current_app.config["PUBLIC_URL"], site.id),
                      "curl": site_pages.curl_command(uri, site.example_host())})
    return fragment_or_page("overview.html", "_overview_live.html", sites=shown, generated_at=store.iso(now))


from collector.pages import site_pages  # noqa: E402  (registers the per-site pages on bp)
