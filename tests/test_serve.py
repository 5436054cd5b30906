"""The real thing: `staple-collector serve` under gunicorn with its embedded Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import pki
from tests.conftest import free_port, start_redis_server

CLI = str(Path(sys.executable).parent / "staple-collector")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "STAPLE_DATA_DIR", "SECRET_KEY")}
    env.update({"PUBLIC_URL": "https://collector.example", "WEB_CONCURRENCY": "2", **extra})
    return env


class Serve:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [CLI, "serve", "--bind", f"127.0.0.1:{self.port}", "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.stdout.read()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz within 30 s"
            time.sleep(0.1)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=30)
        return output


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    state = tmp_path / "data" / "redis" / "redis.json"
    if state.exists():  # a failed test left a server behind
        os.kill(json.loads(state.read_text())["pid"], signal.SIGTERM)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def _redis_pid(data_dir: Path) -> int:
    return json.loads((data_dir / "redis" / "redis.json").read_text())["pid"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_serve_with_embedded_redis_end_to_end_and_data_survives_a_restart(data_dir):
    env = _env()
    serve = Serve(data_dir, env)
    try:
        redis_pid = _redis_pid(data_dir)
        created = _cli("site", "create", "Shop", "--host", "*.example.com", "--json",
                       "--data-dir", str(data_dir), env=env)
        assert created.returncode == 0, created.stderr
        site = json.loads(created.stdout)
        assert set(site) >= {"id", "report_uri", "header", "token"}
        assert site["report_uri"] == f"https://collector.example/r/{site['id']}/staple"
        assert site["header"] == (
            f'Expect-Staple: max-age=31536000; report-uri="{site["report_uri"]}"; includeSubDomains')
        # The command used the running server rather than starting its own.
        assert _redis_pid(data_dir) == redis_pid

        ca = pki.make_ca()
        leaf = pki.make_leaf(ca, "www.example.com", must_staple=True)
        report = pki.chrome_report(leaf, ca, response_status="INVALID_DATE",
                                   ocsp_der=pki.ocsp_response(leaf, ca))
        url = f"{serve.base}/r/{site['id']}/staple"
        response = requests.post(url, data=json.dumps(report),
                                 headers={"Content-Type": "application/json; charset=utf-8"})
        assert response.status_code == 200 and response.content == b""

        # A chunked body with no Content-Length is still cut off at the limit.
        def chunks():
            for _ in range(100):
                yield b"x" * 1024
        big = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"

        auth = {"Authorization": f"Bearer {site['token']}"}
        hosts = requests.get(f"{serve.base}/api/v1/sites/{site['id']}/hosts", headers=auth).json()
        assert hosts["hosts"][0]["last_hour"]["by_status"] == {"INVALID_DATE": 1}
        assert requests.get(f"{serve.base}/readyz").json()["redis"] == "ok"
    finally:
        output = serve.stop()
    assert "listening on  http://127.0.0.1:" in output and str(data_dir.resolve()) in output
    assert not _alive(redis_pid), "serve must stop the embedded Redis it started"
    assert not (data_dir / "redis" / "redis.json").exists()

    again = Serve(data_dir, env)
    try:
        hosts = requests.get(f"{again.base}/api/v1/sites/{site['id']}/hosts", headers=auth).json()
        assert hosts["hosts"][0]["hostname"] == "www.example.com"
        assert hosts["hosts"][0]["total"] == 1
        [sample] = requests.get(
            f"{again.base}/api/v1/sites/{site['id']}/hosts/www.example.com/reports", headers=auth
        ).json()["reports"]
        assert sample["ocsp-response"] == report["ocsp-response"]
    finally:
        again.stop()


def test_commands_start_their_own_redis_when_no_serve_runs(data_dir):
    env = _env()
    created = _cli("site", "create", "One", "--data-dir", str(data_dir), "--json", env=env)
    assert created.returncode == 0, created.stderr
    listed = _cli("site", "list", "--json", "--data-dir", str(data_dir), env=env)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["One"]
    assert not (data_dir / "redis" / "redis.json").exists(), "the command's Redis was stopped"
    assert (data_dir / "redis" / "appendonly.aof").exists()
    human = _cli("site", "list", "--data-dir", str(data_dir), env=env).stdout
    assert "One" in human and "https://collector.example/r/" in human


def test_serve_with_redis_url_starts_no_redis(tmp_path, data_dir):
    process, port = start_redis_server(tmp_path)
    try:
        env = _env(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        serve = Serve(data_dir, env)
        try:
            assert not (data_dir / "redis" / "redis.json").exists()
            created = _cli("site", "create", "Ext", "--json", "--data-dir", str(data_dir), env=env)
            site = json.loads(created.stdout)
            assert requests.post(f"{serve.base}/r/{site['id']}/staple",
                                 json={"hostname": "a.example", "response-status": "MISSING"}
                                 ).status_code == 200
        finally:
            output = serve.stop()
        assert f"127.0.0.1:{port}" in output
    finally:
        process.terminate()
        process.wait()


def test_a_malformed_setting_stops_start_up_with_a_clear_message(data_dir):
    result = _cli("serve", "--data-dir", str(data_dir), env=_env(MAX_REPORT_BYTES="lots"))
    assert result.returncode == 2
    assert "MAX_REPORT_BYTES" in result.stderr and "not an integer" in result.stderr
    assert not (data_dir / "redis" / "redis.json").exists()


def test_site_create_rejects_bad_host_patterns(data_dir):
    result = _cli("site", "create", "Bad", "--host", "192.0.2.1", "--data-dir", str(data_dir), env=_env())
    assert result.returncode == 2 and "--host" in result.stderr
