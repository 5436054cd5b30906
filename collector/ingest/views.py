"""``POST /r/<site-id>/staple``: take a report, classify it, store it in one round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError

from collector import alerts, diagnosis, metrics, store
from collector.errors import error_response
from collector.ingest import parse
from collector.ingest.schema import load_report
from collector.sites import Site

bp = Blueprint("ingest", __name__)

# report-uri.com style suffixes some owners already have in their headers.
MODES = ("reportOnly", "enforce")
CORS = {
    "Access-Control-Allow-Origin": "*",
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
MAX_USER_AGENT = 300


def _cors(response: Response) -> Response:
    response.headers.update(CORS)
    return response


@bp.route("/r/<site_id>/staple", methods=["POST", "OPTIONS"])
@bp.route("/r/<site_id>/staple/<mode>", methods=["POST", "OPTIONS"])
def report(site_id: str, mode: str | None = None) -> Response:
    started = time.perf_counter()
    code = 500
    try:
        response = _report(site_id, mode)
        code = response.status_code
        return response
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
        code = 503
        raise
    finally:
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        metrics.INGEST_RESPONSES.labels(str(code)).inc()


def _report(site_id: str, mode: str | None) -> Response:
    if mode is not None and mode not in MODES:
        return _cors(error_response(404, "not_found", "No such report endpoint."))
    if request.method == "OPTIONS":
        return Response(status=204, headers=PREFLIGHT)

    ext = current_app.extensions
    client = ext["redis"]
    config = current_app.config
    site = ext["site_cache"].get(client, site_id)
    if site is None:
        return _cors(error_response(404, "unknown_site", "No site has this report URI."))

    outcomes = store.Outcomes()
    limit = config["MAX_REPORT_BYTES"]
    try:
        if request.content_length is not None and request.content_length > limit:
            raise parse.Rejection(413, "too_large", f"The body is larger than {limit} bytes.")
        kind = parse.media_type(request.headers.get("Content-Type"))
        body = request.stream.read(limit + 1)
        if len(body) > limit:
            raise parse.Rejection(413, "too_large", f"The body is larger than {limit} bytes.")
        extracted = parse.extract(parse.parse_json(body), kind, config["MAX_BATCH_REPORTS"])
    except parse.Rejection as rejection:
        outcomes.add("rejected", rejection.code, rejection.count)
        now = int(time.time())
        codes = _write(site, outcomes, now)
        if store.RATE_LIMITED_CLIENT in codes:
            return _cors(_rate_limited(now))
        return _cors(
            error_response(rejection.status, rejection.code, rejection.message, rejection.fields)
        )

    now = int(time.time())
    received = datetime.fromtimestamp(now, UTC)
    user_agent = (request.headers.get("User-Agent") or "")[:MAX_USER_AGENT] or None
    errors: dict[str, Any] = {}
    for index, (shape, candidate) in enumerate(extracted.candidates):
        try:
            report = load_report(candidate)
        except ValidationError as exc:
            errors[str(index)] = exc.messages
            outcomes.add("rejected", "invalid_report")
            continue
        if not site.accepts(report.hostname):
            outcomes.add("filtered", "host_not_allowed")
            continue
        analysis = diagnosis.analyse(
            response_status=report.response_status,
            cert_status=report.cert_status,
            ocsp_der=report.ocsp_response,
            served_chain=report.served_certificate_chain,
            validated_chain=report.validated_certificate_chain,
            at=diagnosis.judgement_time(report.date_time, received),
        )
        sample = report.to_sample()
        sample.update(
            received_at=store.iso(now), shape=shape, endpoint=mode, user_agent=user_agent,
            # Code and severity only: the summary, advice and findings are derived
            # again on read (memoised decoding), keeping each stored sample small.
            diagnosis={"code": analysis.diagnosis.code, "severity": analysis.diagnosis.severity},
        )
        outcomes.accepted.append(
            store.Accepted(
                host=report.hostname,
                port=report.port,
                response_status=report.response_status,
                cert_status=report.cert_status,
                diagnosis=analysis.diagnosis.code,
                severity=analysis.diagnosis.severity,
                must_staple=analysis.must_staple,
                sample=sample,
            )
        )
    for reason in extracted.ignored:
        outcomes.add("rejected", reason)
    codes = _write(site, outcomes, now)

    stored = any(code >= 0 for code in codes[: len(outcomes.accepted)])
    if not stored:
        if store.RATE_LIMITED_CLIENT in codes or store.RATE_LIMITED_SITE in codes:
            return _cors(_rate_limited(now))
        if store.TOO_MANY_HOSTS in codes:
            cap = current_app.config["MAX_HOSTS_PER_SITE"]
            return _cors(error_response(
                422, "too_many_hosts",
                f"This site already tracks {cap} hostnames; reports for new hostnames are refused "
                "until hosts without reports age out.",
            ))
    if not stored and not outcomes.filtered:
        fields = errors["0"] if not extracted.batch else errors
        return _cors(error_response(400, "invalid_report", "The report is not valid.", fields))
    response = Response(status=200, mimetype="text/plain")
    response.headers["X-Report-Outcome"] = "accepted" if stored else "filtered"
    return _cors(response)


_REFUSED = {store.RATE_LIMITED_CLIENT: "rate_limited", store.RATE_LIMITED_SITE: "rate_limited",
            store.TOO_MANY_HOSTS: "too_many_hosts"}


def _count(outcomes: store.Outcomes, codes: list[int]) -> None:
    """The request's reports in the Prometheus counters, as the script decided them."""
    for accepted, code in zip(outcomes.accepted, codes, strict=False):
        if code >= 0:
            metrics.REPORTS.labels("accepted", "").inc()
            metrics.REPORTS_BY_STATUS.labels(accepted.response_status).inc()
            metrics.REPORTS_BY_DIAGNOSIS.labels(accepted.diagnosis, accepted.severity).inc()
        else:
            metrics.REPORTS.labels("rejected", _REFUSED[code]).inc()
    limited = codes[len(outcomes.accepted):] == [store.RATE_LIMITED_CLIENT]
    for kind, reasons in (("filtered", outcomes.filtered), ("rejected", outcomes.rejected)):
        for reason, n in reasons.items():
            if limited:
                metrics.REPORTS.labels("rejected", "rate_limited").inc(n)
            else:
                metrics.REPORTS.labels(kind, reason).inc(n)


def _rate_limited(now: int) -> Response:
    retry_after = current_app.extensions["limits"].retry_after(now)
    return error_response(
        429, "rate_limited", "Too many reports; retry later.", headers={"Retry-After": str(retry_after)}
    )


def _write(site: Site, outcomes: store.Outcomes, now: int) -> list[int]:
    """Store the request's outcomes (one round trip) and count them in the metrics."""
    ext = current_app.extensions
    address = request.remote_addr or "unknown"
    codes = store.write(
        ext["redis"],
        site.id,
        outcomes,
        store.client_hash(ext["client_salt"], address),
        now,
        ext["retention"],
        alerts.effective(current_app.config, site.alerts),
        ext["limits"],
    )
    _count(outcomes, codes)
    return codes
