"""A real TLS server that staples what the test gives it: ``openssl s_server -status_file``."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests import pki
from tests.conftest import free_port


class StapleServer:
    def __init__(self, directory: Path, leaf: pki.Issued, ca: pki.Issued, ocsp_der: bytes | None = None,
                 tls: str | None = None, port: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        cert = directory / "cert.pem"
        key = directory / "key.pem"
        chain = directory / "chain.pem"
        cert.write_text(leaf.pem)
        key.write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        chain.write_text(ca.pem)
        command = ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert),
                   "-key", str(key), "-cert_chain", str(chain), "-www", "-quiet"]
        if ocsp_der is not None:
            status = directory / "status.der"
            status.write_bytes(ocsp_der)
            command += ["-status_file", str(status)]
        if tls:
            command.append({"1.2": "-tls1_2", "1.3": "-tls1_3"}[tls])
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"openssl s_server exited: {self.process.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("openssl s_server did not listen") from None
                time.sleep(0.05)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
