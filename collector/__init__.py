"""Expect-Staple report collector: the Flask app factory.

``gunicorn 'collector:create_app()'`` calls this directly.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from collector import embedded, errors, logs, redisconn, settings, sites, store

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``config`` (for tests)."""
    environ = dict(os.environ)
    environ.update({k: str(v) for k, v in (config or {}).items()})
    values = settings.load(environ)

    app = Flask(__name__)
    app.config.update(values)
    logs.setup(values["LOG_LEVEL"])

    data_dir = Path(values["STAPLE_DATA_DIR"]).resolve()
    url = values["REDIS_URL"] or embedded.running_url(data_dir)
    if not url:
        raise settings.SettingsError(
            f"REDIS_URL is not set and no embedded Redis is running for {data_dir}: "
            "start the collector with `staple-collector serve`, or set REDIS_URL"
        )
    app.extensions["redis"] = redisconn.connect(
        url, cluster=values["REDIS_CLUSTER"] and bool(values["REDIS_URL"]), timeout=values["REDIS_TIMEOUT"]
    )
    secret = secret_key(values["SECRET_KEY"], data_dir)
    app.secret_key = secret
    # A key of its own for client hashes, so rotating session secrets later and
    # client estimates stay independent.
    app.extensions["client_salt"] = store.client_salt(secret)
    app.extensions["site_cache"] = sites.SiteCache(values["SITE_CACHE_TTL"])
    app.extensions["retention"] = store.Retention.from_config(values)
    app.extensions["limits"] = store.Limits.from_config(values)

    if values["TRUSTED_PROXIES"]:
        n = values["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    app.session_interface = _Sessions()
    app.config.update(
        SESSION_COOKIE_NAME="staple_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=values["PUBLIC_URL"].startswith("https://"),
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    errors.register(app)
    # Imported here, not at the top: prometheus_client picks its storage when
    # first imported, and gunicorn's configuration sets PROMETHEUS_MULTIPROC_DIR
    # after importing this package (collector.metrics).
    from collector import metrics
    from collector.api.views import bp as api_bp
    from collector.ingest.views import bp as ingest_bp
    from collector.pages import bp as pages_bp

    app.register_blueprint(ingest_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(pages_bp)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        expected = values["METRICS_TOKEN"]
        if expected:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
                return errors.error_response(
                    401, "unauthorized", "Metrics need the METRICS_TOKEN as a bearer token.",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        body, content_type = metrics.render(app.extensions["redis"])
        return Response(body, content_type=content_type)

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            app.extensions["redis"].ping()
        except redis.exceptions.RedisError:
            return errors.error_response(
                503, "unavailable", "Redis is not reachable.",
                headers={"Retry-After": str(errors.REDIS_RETRY_AFTER)},
            )
        return jsonify({"status": "ok", "redis": "ok"})

    return app


class _Sessions(SecureCookieSessionInterface):
    """No session on the report endpoint: it never uses one, and it is the hot path."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith("/r/"):
            return None  # Flask uses a null session
        return super().open_session(app, request)


def secret_key(configured: str, data_dir: Path) -> bytes:
    """SECRET_KEY, or one generated once and kept in ``<data-dir>/secret_key`` (0600)."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / "secret_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32).hex().encode()
    # Written whole under a temporary name, then linked into place: a process
    # racing us either wins the link or reads a complete key, never a partial one.
    tmp = data_dir / f".secret_key.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_bytes().strip()
    finally:
        tmp.unlink()
    return key
