"""The benchmark's reference: a bare Flask endpoint that reads the body and answers 200.

    gunicorn -c python:collector.gunicorn_conf 'bench.bare_app:create_app()'

Same route shape, same gunicorn configuration as the collector, nothing else:
the ceiling that Flask, gunicorn and HTTP parsing put on this machine.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, request


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:  # the benchmark waits for it, as for the collector's
        return Response("ok", mimetype="text/plain")

    return app


def create_app() -> Flask:
    app = _app()

    @app.post("/r/<site_id>/staple")
    def report(site_id: str) -> Response:
        request.get_data()
        return Response(status=200, mimetype="text/plain")

    return app


FLOOR_SCRIPT = "return redis.call('HINCRBY', KEYS[1], 'n', 1)"


def create_floor_app() -> Flask:
    """The bare endpoint plus one Redis round trip per report (a one-command script via redis-py).

    No parsing, no validation, no aggregation: the least any design that stores
    each report with one round trip on the request can cost. The benchmark runs
    it with ``--floor`` to show what the 60% target leaves for everything else.
    """
    app = _app()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    script = client.register_script(FLOOR_SCRIPT)

    @app.post("/r/<site_id>/staple")
    def report(site_id: str) -> Response:
        request.get_data()
        script(keys=[f"bench:{{{site_id}}}:n"])
        return Response(status=200, mimetype="text/plain")

    return app


QUEUE_SCRIPT = """
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if used > tonumber(ARGV[1]) then return -1 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'r', ARGV[2])
return 1
"""


def create_queue_app() -> Flask:
    """What a report costs when the request only validates and queues it for a worker.

    The floor plus the collector's own parsing and validation (``parse`` and
    ``load_report``, the hot path's fast validator) and a script that checks a
    rate limit and appends the body to a stream. No site lookup, diagnosis,
    aggregation or metrics: the least the request can do in a design that moves
    aggregation to the worker (``--queue`` in the benchmark).
    """
    from collector.ingest import parse
    from collector.ingest.schema import load_report

    app = _app()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    script = client.register_script(QUEUE_SCRIPT)

    @app.post("/r/<site_id>/staple")
    def report(site_id: str) -> Response:
        kind = parse.media_type(request.headers.get("Content-Type"))
        body = request.get_data()
        extracted = parse.extract(parse.parse_json(body), kind, 100)
        for _, candidate in extracted.candidates:
            load_report(candidate)
        address = request.remote_addr or ""
        script(keys=[f"bench:{{{site_id}}}:limit:{address}", f"bench:{{{site_id}}}:inbox"],
               args=[10_000_000, body])
        return Response(status=200, mimetype="text/plain")

    return app
