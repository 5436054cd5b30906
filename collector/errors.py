"""One JSON error shape for every error answer, pages aside.

    {"error": {"status": 404, "code": "not_found", "message": "...", "fields": {}}}

``fields`` maps a field (or a batch entry's index) to its problems; it is
empty when the error is not about fields.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

REDIS_RETRY_AFTER = 5


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(
        {"error": {"status": status, "code": code, "message": message, "fields": fields or {}}}
    )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        headers = {}
        if exc.code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return error_response(exc.code or 500, _code_for(exc), exc.description or "", headers=headers)

    @app.errorhandler(redis.exceptions.RedisError)
    @app.errorhandler(redis.exceptions.RedisClusterException)
    def redis_error(exc: Exception) -> Response:
        log.warning("redis unavailable", extra={"event": "redis_error", "error": type(exc).__name__})
        from collector import metrics  # not at import: see collector.metrics

        metrics.REDIS_ERRORS.labels("web").inc()
        return error_response(
            503, "unavailable", "Storage is unavailable; retry later.",
            headers={"Retry-After": str(REDIS_RETRY_AFTER)},
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
