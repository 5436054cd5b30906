"""A site's pages: each host's chart, diagnoses, incident, samples and deliveries; the site's settings.

A site the signed-in user may not see, and a host the site has never had a
report for, are both a plain 404: the answer does not tell whether they exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for

from collector import alerts, hostnames, keys, outbound, probes, settings, sites, store, webhooks, worker
from collector.explain import explain
from collector.pages import _check_csrf, _redis, bp, charts, current_user, fragment_or_page, login_required

SAMPLES_SHOWN = 10
DELIVERIES_SHOWN = 20
DELIVERIES_SCANNED = 200

MUST_STAPLE_TEXT = {
    True: "Yes. Strict clients refuse to connect without a valid staple: every failure here is a "
          "visitor who could not load the site.",
    False: "No. Clients that miss a staple fall back to other checks or connect anyway; the "
           "failures are a warning, not yet an outage.",
    None: "Unknown: no report for this host carried its certificate.",
}


def visible_site(site_id: str) -> sites.Site:
    user = current_user()
    site = sites.get(_redis(), site_id)
    if site is None or user is None or not user.can_see(site.id):
        abort(404, description="No such site.")
    return site


def _host_name(hostname: str) -> str:
    try:
        return hostnames.normalise(hostname)
    except hostnames.HostnameError:
        abort(404, description="No such host.")


def _chosen_range() -> tuple[str, int, int]:
    chosen = request.args.get("range", charts.DEFAULT_RANGE)
    if chosen not in charts.RANGES:
        chosen = charts.DEFAULT_RANGE
    range_s, step_s = charts.RANGES[chosen]
    if step_s < 3600 and range_s > current_app.config["MINUTE_RETENTION"]:
        step_s = 3600  # minute buckets are not kept that long: read the hour buckets
    return chosen, range_s, step_s


def _explanations(codes: list[tuple[str, int]], samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each diagnosis with its explanation: the latest sample's own words where one is kept."""
    latest: dict[str, dict[str, Any]] = {}
    for sample in samples:  # newest first
        latest.setdefault(sample["diagnosis"]["code"], sample["diagnosis"])
    out = []
    for code, count in codes:
        text = latest.get(code) or webhooks.generic_explanation(code) or {"summary": code, "advice": ""}
        out.append({"code": code, "count": count, "summary": text["summary"], "advice": text["advice"]})
    return out


@bp.get("/sites/<site_id>/hosts/<hostname>")
@login_required
def host(site_id: str, hostname: str) -> Response:
    site = visible_site(site_id)
    name = _host_name(hostname)
    client = _redis()
    now = int(time.time())
    detail = store.host_detail(client, site.id, name, now)
    if detail is None:
        abort(404, description="No such host.")
    chosen, range_s, step_s = _chosen_range()
    points = store.series(client, site.id, name, now, range_s, step_s)
    incident = alerts.host_incident(client, site.id, name)
    samples = [explain(s) for s in store.recent_samples(client, site.id, name, SAMPLES_SHOWN)]
    logged = (worker.recent(client, keys.deliveries(site.id), DELIVERIES_SCANNED)
              + worker.recent(client, keys.dead(site.id), DELIVERIES_SCANNED))
    deliveries = [d for d in logged if d.get("host") == name]
    deliveries.sort(key=lambda d: d.get("at") or "", reverse=True)
    context = {
        "site": site,
        "host": detail,
        "state": incident["state"] if incident else "ok",
        "incident": incident,
        "must_staple_text": MUST_STAPLE_TEXT[detail["must_staple"]],
        "ranges": list(charts.RANGES),
        "range": chosen,
        "chart": charts.status_chart(points, step_s),
        "legend": charts.legend(points),
        "diagnoses": _explanations(charts.diagnosis_totals(points), samples),
        "samples": samples,
        "deliveries": deliveries[:DELIVERIES_SHOWN],
        "probes": probes.status(client, site.id, now, hostname=name),
        "generated_at": store.iso(now),
    }
    return fragment_or_page("host.html", "_host_live.html", **context)


# --- settings ----------------------------------------------------------------------------


def _settings_context(site: sites.Site, **extra: Any) -> dict[str, Any]:
    config = current_app.config
    client = _redis()
    now = int(time.time())
    policy = alerts.effective(config, site.alerts)
    hook = webhooks.get(client, site.id)
    uri = sites.report_uri(config["PUBLIC_URL"], site.id)
    return {
        "site": site,
        "report_uri": uri,
        "header": sites.header_line(config["PUBLIC_URL"], site.id),
        "curl": curl_command(uri, site.example_host()),
        "patterns": "\n".join(site.hosts),
        "webhook": hook.describe() if hook else None,
        "formats": webhooks.FORMATS,
        "policy": [
            {
                "name": name,
                "label": name.replace("_", " "),
                "value": settings.format_duration(getattr(policy, name)) if name in alerts.DURATION_FIELDS
                and getattr(policy, name) else str(getattr(policy, name)),
                "overridden": name in site.alerts,
                "duration": name in alerts.DURATION_FIELDS,
            }
            for name in alerts.POLICY_FIELDS
        ],
        "stats": store.site_stats(client, site.id, now),
        "stats_at": store.iso(now),
        "probes": probes.status(client, site.id, now),
        "cache_ttl": settings.format_duration(config["SITE_CACHE_TTL"]),
        "new_secret": None,
        "new_token": None,
        "errors": {},
        **extra,
    }


def curl_command(report_uri: str, hostname: str) -> str:
    # Hostnames are normalised (letters, digits, dots, hyphens): safe inside the shell's quotes.
    body = json.dumps({"hostname": hostname, "port": 443, "response-status": "MISSING"}, separators=(",", ":"))
    return f"curl -X POST -H 'Content-Type: application/json' --data '{body}' {report_uri}"


@bp.get("/sites/<site_id>/settings")
@login_required
def site_settings(site_id: str) -> Response:
    site = visible_site(site_id)
    return fragment_or_page("settings.html", "_settings_live.html", **_settings_context(site))


def _settings_again(site: sites.Site, status: int = 200, **extra: Any) -> Response:
    fresh = sites.get(_redis(), site.id) or site
    return Response(render_template("settings.html", **_settings_context(fresh, **extra)), status=status)


def _back(site: sites.Site, anchor: str) -> Response:
    return redirect(url_for("pages.site_settings", site_id=site.id) + "#" + anchor)


def settings_form(path: str) -> Callable[[Callable[[sites.Site], Response]], Callable[..., Response]]:
    """A settings form's POST: signed in, CSRF token checked, the site visible to the user."""

    def register(handler: Callable[[sites.Site], Response]) -> Callable[..., Response]:
        @wraps(handler)
        def view(site_id: str) -> Response:
            _check_csrf()
            return handler(visible_site(site_id))

        bp.post(f"/sites/<site_id>/settings/{path}")(login_required(view))
        return view

    return register


@settings_form("hosts")
def settings_hosts(site: sites.Site) -> Response:
    lines = request.form.get("patterns", "")[:20000].splitlines()
    try:
        patterns = sites.set_hosts(_redis(), site.id, lines)
    except hostnames.HostnameError as exc:
        return _settings_again(site, 400, errors={"hosts": f"Not saved: {exc}."})
    if patterns:
        flash(f"Allowed hosts saved ({len(patterns)} pattern{'s' if len(patterns) != 1 else ''}).", "hosts")
    else:
        flash("Allowed hosts cleared: reports for any hostname are accepted.", "hosts")
    return _back(site, "hosts")


@settings_form("alerts")
def settings_alerts(site: sites.Site) -> Response:
    values: dict[str, int] = {}
    problems = []
    for name in alerts.POLICY_FIELDS:
        raw = request.form.get(name, "").strip()
        label = name.replace("_", " ")
        try:
            value = settings.parse_duration(raw) if name in alerts.DURATION_FIELDS and raw != "0" else int(raw)
            values[name] = alerts.check_override(name, value)
        except ValueError as exc:
            problems.append(f"{label}: {exc}" if str(exc) else f"{label}: not a valid value")
    if problems:
        return _settings_again(site, 400, errors={"alerts": "Not saved. " + "; ".join(problems) + "."})
    alerts.replace_overrides(_redis(), site.id, current_app.config, values)
    flash(f"Alert thresholds saved. The report endpoint uses them within "
          f"{settings.format_duration(current_app.config['SITE_CACHE_TTL'])}.", "alerts")
    return _back(site, "alerts")


@settings_form("webhook")
def settings_webhook(site: sites.Site) -> Response:
    fmt = request.form.get("format", "json")
    if fmt not in webhooks.FORMATS:
        return _settings_again(site, 400, errors={"webhook": f"Format must be one of {', '.join(webhooks.FORMATS)}."})
    try:
        url = webhooks.validate_url(request.form.get("url", ""), current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except outbound.Refused as exc:
        return _settings_again(site, 400, errors={"webhook": f"Not saved: {exc}."})
    secret = webhooks.configure(_redis(), site.id, url, fmt, current_app.secret_key)  # type: ignore[arg-type]
    return _settings_again(site, new_secret=secret)


@settings_form("webhook/remove")
def settings_webhook_remove(site: sites.Site) -> Response:
    webhooks.remove(_redis(), site.id)
    flash("Webhook removed: no notifications go out for this site.", "webhook")
    return _back(site, "webhook")


@settings_form("webhook/test")
def settings_webhook_test(site: sites.Site) -> Response:
    try:
        entry = worker.send_test(_redis(), current_app.config, current_app.secret_key, site)  # type: ignore[arg-type]
    except LookupError:
        flash("Set a webhook first.", "webhook-error")
        return _back(site, "webhook")
    status = entry["status_code"] if entry["status_code"] is not None else "no response"
    text = f"Test notification to {entry['destination']}: {entry['outcome']} (HTTP {status}, {entry['latency_ms']} ms)"
    if entry["outcome"] != "delivered" and entry["error"]:
        text += f": {entry['error']}"
    flash(text + ".", "webhook" if entry["outcome"] == "delivered" else "webhook-error")
    return _back(site, "webhook")


@settings_form("token")
def settings_token(site: sites.Site) -> Response:
    token = sites.rotate_token(_redis(), site.id)
    return _settings_again(site, new_token=token)
