"""``/api/v1/sites/<site-id>/...``: what a site's visitors are seeing, as JSON."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from collector import alerts, hostnames, keys, probes, settings, sites, store, worker
from collector.errors import error_response
from collector.explain import explain

bp = Blueprint("api", __name__, url_prefix="/api/v1")

SERIES_STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
MAX_POINTS = 1500


class BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message


def _bad(exc: BadParameter) -> Response:
    return error_response(400, "invalid_parameter", f"{exc.name}: {exc.message}", {exc.name: [exc.message]})


def _not_found() -> Response:
    return error_response(404, "not_found", "No such site or host.")


def site_auth(view: Callable[..., Any]) -> Callable[..., Any]:
    """Bearer token of the site in the URL: 401 without a valid token, 404 for another site's."""

    @functools.wraps(view)
    def wrapper(site_id: str, **kwargs: Any) -> Any:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        owner = None
        if scheme.lower() == "bearer":
            owner = sites.site_for_token(current_app.extensions["redis"], token.strip())
        if owner is None:
            return error_response(
                401, "unauthorized", "A valid site token is required (Authorization: Bearer <token>).",
                headers={"WWW-Authenticate": 'Bearer realm="staple-collector"'},
            )
        if owner != site_id:
            return _not_found()
        g.site_id = site_id
        try:
            return view(site_id, **kwargs)
        except BadParameter as exc:
            return _bad(exc)

    return wrapper


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadParameter(name, f"an integer from {low} to {high}")
    return int(raw)


def _host_arg(hostname: str) -> str | None:
    try:
        return hostnames.normalise(hostname)
    except hostnames.HostnameError:
        return None


def _redis() -> Any:
    return current_app.extensions["redis"]


@bp.get("/sites/<site_id>/hosts")
@site_auth
def hosts(site_id: str) -> Response:
    limit = _int_arg("limit", 100, 1, 1000)
    offset = _int_arg("offset", 0, 0, 10**9)
    now = int(time.time())
    listed = store.list_hosts(_redis(), site_id, now, limit, offset)
    states = alerts.host_states(_redis(), site_id, [h["hostname"] for h in listed])
    for summary in listed:
        summary["alert_state"] = states.get(summary["hostname"], "ok")
    return jsonify(
        {
            "site": site_id,
            "generated_at": store.iso(now),
            "total_hosts": store.host_count(_redis(), site_id),
            "hosts": listed,
        }
    )


@bp.get("/sites/<site_id>/hosts/<hostname>")
@site_auth
def host(site_id: str, hostname: str) -> Response:
    name = _host_arg(hostname)
    detail = store.host_detail(_redis(), site_id, name, int(time.time())) if name else None
    if not detail:
        return _not_found()
    latest = store.recent_samples(_redis(), site_id, name, 1)
    detail["latest_report"] = explain(latest[0]) if latest else None
    detail["incident"] = alerts.host_incident(_redis(), site_id, name)
    detail["alert_state"] = detail["incident"]["state"] if detail["incident"] else "ok"
    detail["probes"] = probes.status(_redis(), site_id, int(time.time()), hostname=name)
    return jsonify(detail)


@bp.get("/sites/<site_id>/hosts/<hostname>/series")
@site_auth
def host_series(site_id: str, hostname: str) -> Response:
    name = _host_arg(hostname)
    if not name or not _redis().exists(keys.host_meta(site_id, name)):
        return _not_found()
    range_text = request.args.get("range", "24h")
    step_text = request.args.get("step", "1h")
    try:
        range_s = settings.parse_duration(range_text)
    except ValueError:
        raise BadParameter("range", "a duration such as 6h, 24h, 7d or 90d") from None
    if step_text not in SERIES_STEPS:
        raise BadParameter("step", f"one of {', '.join(SERIES_STEPS)}")
    step_s = SERIES_STEPS[step_text]
    config = current_app.config
    keep = config["MINUTE_RETENTION"] if step_s < 3600 else config["HOUR_RETENTION"]
    if range_s < step_s or range_s % step_s:
        raise BadParameter("range", f"a whole multiple of the step ({step_text})")
    if range_s > keep:
        raise BadParameter("range", f"at most {settings.format_duration(keep)} with step {step_text}")
    if range_s // step_s > MAX_POINTS:
        raise BadParameter("step", f"too fine for this range (at most {MAX_POINTS} points)")
    now = int(time.time())
    return jsonify(
        {
            "hostname": name,
            "range": range_text,
            "step": step_text,
            "points": store.series(_redis(), site_id, name, now, range_s, step_s),
        }
    )


@bp.get("/sites/<site_id>/hosts/<hostname>/reports")
@site_auth
def host_reports(site_id: str, hostname: str) -> Response:
    name = _host_arg(hostname)
    limit = _int_arg("limit", 50, 1, 1000)
    if not name or not _redis().exists(keys.host_meta(site_id, name)):
        return _not_found()
    samples = store.recent_samples(_redis(), site_id, name, limit)
    return jsonify({"hostname": name, "reports": [explain(s) for s in samples]})


@bp.get("/sites/<site_id>/stats")
@site_auth
def stats(site_id: str) -> Response:
    return jsonify({"site": site_id, **store.site_stats(_redis(), site_id, int(time.time()))})


INCIDENT_STATES = ("firing", "resolved")


@bp.get("/sites/<site_id>/incidents")
@site_auth
def incidents(site_id: str) -> Response:
    limit = _int_arg("limit", 50, 1, alerts.INCIDENT_HISTORY)
    state = request.args.get("state")
    if state is not None and state not in INCIDENT_STATES:
        raise BadParameter("state", f"one of {', '.join(INCIDENT_STATES)}")
    return jsonify({"site": site_id, "incidents": alerts.list_incidents(_redis(), site_id, limit, state)})


@bp.get("/sites/<site_id>/deliveries")
@site_auth
def deliveries(site_id: str) -> Response:
    limit = _int_arg("limit", 50, 1, 1000)
    return jsonify({"site": site_id, **worker.deliveries(_redis(), site_id, limit)})


@bp.get("/sites/<site_id>/probes")
@site_auth
def probe_targets(site_id: str) -> Response:
    return jsonify({"site": site_id, "probes": probes.status(_redis(), site_id, int(time.time()))})
