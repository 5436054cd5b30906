"""Shared fixtures: a real redis-server process, the app on it, sites, certificates."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from collector import create_app, embedded, sites
from tests import pki

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEERS = SHARED / "fixtures" / "peers"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis_server(directory: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [embedded.find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return process, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.025)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, port = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    return client


@pytest.fixture
def app(redis_client: redis.Redis, redis_url: str, tmp_path: Path):
    return create_app(
        {"REDIS_URL": redis_url, "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "test-secret"}
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def site(redis_client: redis.Redis) -> sites.NewSite:
    return sites.create(redis_client, "Test site", [])


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    return pki.make_ca()


@pytest.fixture(scope="session")
def leaf(ca: pki.Issued) -> pki.Issued:
    return pki.make_leaf(ca, "www.example.com")


def post(client, site_id: str, body, content_type: str = "application/json; charset=utf-8",
         suffix: str = "", **kwargs):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        f"/r/{site_id}/staple{suffix}", data=data, headers={"Content-Type": content_type}, **kwargs
    )


def api(client, new_site: sites.NewSite, path: str, token: str | None = None):
    return client.get(
        f"/api/v1/sites/{new_site.site.id}{path}",
        headers={"Authorization": f"Bearer {token or new_site.token}"},
    )


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "code", "message", "fields"}
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if code:
        assert error["code"] == code
    return error
