"""The TLS options of the PostgreSQL URL reach libpq when the store connects.

A socket stands in for the server: it records how each connection opens and
answers an SSLRequest with "S", so libpq goes on to TLS as it would with a
real server, then hangs up. Nothing here needs PostgreSQL.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.errors import DatabaseUnavailableError
from infra.settings import PostgresSettings, Settings
from tests.unit.certificates import write_test_ca
from workers.runtime import open_store

# The first eight bytes of a connection: its length and a request code.
SSL_REQUEST = 80877103
STARTUP_V3 = 196608
TLS_HANDSHAKE = 0x16


class FakeServer:
    """Accepts connections and records how each one opened."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(): poll.
        self.socket.settimeout(0.05)
        self.port = self.socket.getsockname()[1]
        self.stopped = threading.Event()
        self.requests: list[int] = []
        # The first byte sent after the server agreed to TLS, per connection.
        self.after_tls_agreed: list[int | None] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = conn.recv(8)
        if len(head) < 8:
            return
        _, code = struct.unpack("!ii", head)
        self.requests.append(code)
        if code == SSL_REQUEST:
            conn.sendall(b"S")
            first = conn.recv(1)
            self.after_tls_agreed.append(first[0] if first else None)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.socket.close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def connect(
    server: FakeServer, query: str, monkeypatch: pytest.MonkeyPatch
) -> pytest.ExceptionInfo[DatabaseUnavailableError]:
    """Open the store on the fake server, through the environment as in production."""
    url = f"postgresql://svc:s3cr3t@127.0.0.1:{server.port}/app?{query}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MENTORFLOW_POSTGRES_CONNECT_TIMEOUT_S", "0.5")
    settings = Settings(postgres=PostgresSettings())

    with pytest.raises(DatabaseUnavailableError) as caught:
        open_store(settings)
    return caught


def test_sslmode_disable_opens_without_tls(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(server, "sslmode=disable", monkeypatch)

    assert server.requests
    assert set(server.requests) == {STARTUP_V3}


def test_sslmode_require_asks_for_tls_and_starts_a_handshake(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(server, "sslmode=require", monkeypatch)

    assert set(server.requests) == {SSL_REQUEST}
    assert set(server.after_tls_agreed) == {TLS_HANDSHAKE}


def test_sslmode_verify_full_loads_sslrootcert_before_the_handshake(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = write_test_ca(tmp_path)

    connect(server, f"sslmode=verify-full&sslrootcert={root}", monkeypatch)

    assert set(server.requests) == {SSL_REQUEST}
    assert set(server.after_tls_agreed) == {TLS_HANDSHAKE}


def test_libpq_reads_the_sslrootcert_the_url_names(
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "not-a-certificate.crt"
    root.write_text("not a certificate\n")
    caplog.set_level(logging.WARNING, logger="psycopg.pool")

    caught = connect(server, f"sslmode=verify-ca&sslrootcert={root}", monkeypatch)

    # libpq gave up on the file before any handshake, and said which file.
    assert set(server.after_tls_agreed) == {None}
    assert f'could not read root certificate file "{root}"' in caplog.text
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in str(caught.value)
