"""The benchmark's reference: a bare Flask endpoint that reads the body and answers 200.

    gunicorn -c python:collector.gunicorn_conf 'bench.bare_app:create_app()'

Same route shape, same gunicorn configuration as the collector, nothing else:
the ceiling that Flask, gunicorn and HTTP parsing put on this machine.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/r/<site_id>/staple")
    def report(site_id: str) -> Response:
        request.get_data()
        return Response(status=200, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:  # the benchmark waits for it, as for the collector's
        return Response("ok", mimetype="text/plain")

    return app


FLOOR_SCRIPT = "return redis.call('HINCRBY', KEYS[1], 'n', 1)"


def create_floor_app() -> Flask:
    """The bare endpoint plus one Redis round trip per report (a one-command script via redis-py).

    No parsing, no validation, no aggregation: the least any design that stores
    each report with one round trip on the request can cost. The benchmark runs
    it with ``--floor`` to show what the 60% target leaves for everything else.
    """
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    script = client.register_script(FLOOR_SCRIPT)

    @app.post("/r/<site_id>/staple")
    def report(site_id: str) -> Response:
        request.get_data()
        script(keys=[f"bench:{{{site_id}}}:n"])
        return Response(status=200, mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    return app
