"""The benchmark's reference: a bare Flask endpoint that reads the body and answers 200.

    gunicorn -c python:collector.gunicorn_conf 'bench.bare_app:create_app()'

Same route shape, same gunicorn configuration as the collector, nothing else:
the ceiling that Flask, gunicorn and HTTP parsing put on this machine.
"""

from __future__ import annotations

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
