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

from collector import create_app, embedded, redisconn, sites
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


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def single_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, port = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    _stop([process])


def _cluster_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free as well."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


def start_redis_cluster(directory: Path, masters: int = 3) -> tuple[list[subprocess.Popen], list[int]]:
    """A real Redis Cluster of ``masters`` primaries, slots split evenly, no replicas."""
    processes: list[subprocess.Popen] = []
    ports = _cluster_ports(masters)
    for port in ports:
        node_dir = directory / str(port)
        node_dir.mkdir()
        processes.append(subprocess.Popen(
            [embedded.find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(node_dir),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "5000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    nodes = [redis.Redis(port=port) for port in ports]
    for node in nodes:
        for _ in range(200):
            try:
                node.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.025)
    per_node = 16384 // masters
    for i, node in enumerate(nodes):
        end = 16384 if i == masters - 1 else (i + 1) * per_node
        node.execute_command("CLUSTER", "ADDSLOTS", *range(i * per_node, end))
    for port in ports[1:]:
        nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        infos = [node.execute_command("CLUSTER", "INFO") for node in nodes]
        if all(b"cluster_state:ok" in (i if isinstance(i, bytes) else i.encode()) for i in infos) and all(
            len(node.execute_command("CLUSTER", "NODES").splitlines()) == masters for node in nodes
        ):
            return processes, ports
        time.sleep(0.1)
    _stop(processes)
    raise RuntimeError("the Redis Cluster did not come up")


@pytest.fixture(scope="session")
def cluster_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes, ports = start_redis_cluster(tmp_path_factory.mktemp("cluster"))
    yield f"redis://127.0.0.1:{ports[0]}/0"
    _stop(processes)


@pytest.fixture
def backend() -> str:
    """Which Redis the test runs on; modules run on both with ``backend_params``."""
    return "single"


@pytest.fixture
def redis_cluster(backend: str) -> bool:
    return backend == "cluster"


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # In the environment, so every app, command and child process the test
    # starts talks to the same kind of Redis.
    monkeypatch.setenv("REDIS_CLUSTER", str(backend == "cluster").lower())
    return str(request.getfixturevalue(f"{backend}_redis_url"))


def on_both_backends(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_client(redis_url: str, redis_cluster: bool):
    client = redisconn.connect(redis_url, cluster=redis_cluster)
    client.flushall()
    return client


def app_config(redis_url: str, redis_cluster: bool, tmp_path: Path, **extra) -> dict:
    return {"REDIS_URL": redis_url, "REDIS_CLUSTER": str(redis_cluster).lower(),
            "STAPLE_DATA_DIR": str(tmp_path), "SECRET_KEY": "test-secret", **extra}


@pytest.fixture
def app(redis_client, redis_url: str, redis_cluster: bool, tmp_path: Path):
    return create_app(app_config(redis_url, redis_cluster, tmp_path))


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
