"""Run a real single-node Apache Kafka broker (KRaft mode) for integration tests.

The broker comes from Apache Kafka's own artifacts on Maven Central: the
``kafka/pom.xml`` next to this module lists ``org.apache.kafka:kafka_2.13`` and a
log4j2 binding, and ``mvn dependency:copy-dependencies`` copies those jars, with
their runtime dependencies, into ``~/.cache/mentorflow/kafka-<version>/lib``
once per machine. Each :class:`ApacheKafkaBroker` then formats its own storage
directory and runs ``kafka.Kafka`` as one combined broker and controller on
free ports of 127.0.0.1.

Command line::

    python -m infra.kafka_broker fetch              # download only (warms CI cache)
    python -m infra.kafka_broker run --work-dir DIR # start one, wait for Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from infra.errors import InfraError

logger = logging.getLogger(__name__)

DEFAULT_VERSION = "4.1.1"
"""Apache Kafka version started unless another is asked for."""

HOST = "127.0.0.1"
HEAP = "-Xmx512m"
STOP_GRACE_S = 20.0
"""Seconds between SIGTERM and SIGKILL when stopping the broker."""

_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_MVN_TIMEOUT_S = 900.0
_FORMAT_TIMEOUT_S = 120.0
_LOG_TAIL_LINES = 25
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_COMPLETE_MARKER = ".complete"
_SERVER_LOG = "server.log"
_STDOUT_LOG = "stdout.log"
_LOG4J2_CONFIG = """\
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = warn
logger.state-change.name = state.change.logger
logger.state-change.level = warn
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = warn
"""

# Brokers still running when the interpreter exits are stopped by atexit.
_LIVE_BROKERS: weakref.WeakSet[ApacheKafkaBroker] = weakref.WeakSet()


class KafkaBrokerError(InfraError):
    """Downloading, formatting or starting the Kafka broker failed."""


def default_cache_dir() -> Path:
    """Return the per-user cache directory that holds Kafka distributions."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mentorflow"


def ensure_kafka_distribution(version: str, cache_dir: Path | None = None) -> Path:
    """Return the lib dir of Kafka ``version``, downloading it with mvn once."""
    # The jars land in <cache_dir>/kafka-<version>/lib; cache_dir defaults to
    # ~/.cache/mentorflow (or $XDG_CACHE_HOME/mentorflow).
    _check_version(version)
    base = cache_dir if cache_dir is not None else default_cache_dir()
    dist_dir = base / f"kafka-{version}"
    lib_dir = dist_dir / "lib"
    if (dist_dir / _COMPLETE_MARKER).is_file():
        return lib_dir
    dist_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(dist_dir / ".lock"):
        # Another process may have finished the download while we waited.
        if (dist_dir / _COMPLETE_MARKER).is_file():
            return lib_dir
        _download(version, dist_dir, lib_dir)
    return lib_dir


def _check_version(version: str) -> None:
    """Reject version strings that cannot be a Maven version."""
    allowed = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-")
    if not version or not set(version) <= allowed or version[0] in ".-":
        raise KafkaBrokerError(f"invalid kafka version {version!r}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (one download at a time)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(version: str, dist_dir: Path, lib_dir: Path) -> None:
    """Copy kafka_2.13 and its runtime dependencies into ``lib_dir`` via mvn."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError("kafka download failed: maven (mvn) is not on PATH")
    if not _POM.is_file():
        raise KafkaBrokerError(f"kafka download failed: {_POM} is missing")
    staging = dist_dir / f"lib.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}",
    ]
    logger.info("downloading apache kafka %s into %s", version, lib_dir)
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            cwd=dist_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaBrokerError(
            f"kafka {version} download timed out after {_MVN_TIMEOUT_S:.0f}s"
        ) from exc
    server_jar = staging / f"kafka_2.13-{version}.jar"
    if result.returncode != 0 or not server_jar.is_file():
        shutil.rmtree(staging, ignore_errors=True)
        output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr)
        errors = [line for line in output.splitlines() if line.startswith("[ERROR]")]
        summary = errors[0].removeprefix("[ERROR]").strip() if errors else ""
        raise KafkaBrokerError(
            f"kafka {version} download failed (mvn exit {result.returncode})"
            f"{': ' + summary if summary else ''}\n{_tail_text(output)}"
        )
    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)
    (dist_dir / _COMPLETE_MARKER).write_text(f"{version}\n")
    logger.info(
        "downloaded apache kafka %s (%d jars) in %.1fs",
        version,
        len(list(lib_dir.glob("*.jar"))),
        time.monotonic() - started,
    )


def _tail_text(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _read_log(path: Path, start: int = 0, limit: int = 4 * 1024 * 1024) -> str:
    """Return a log file's text from byte ``start`` (at most its last ``limit``)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(start, handle.tell() - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _log_excerpt(text: str, tail_lines: int = _LOG_TAIL_LINES) -> str:
    """Return a log's first ERROR/FATAL entries and its last ``tail_lines`` lines."""
    lines = text.splitlines()
    errors: list[str] = []
    for index, line in enumerate(lines):
        if " ERROR " in line or " FATAL " in line:
            errors.append(line)
            # The exception message follows the entry, before the stack trace.
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if following and not following.startswith(("\t", "[")):
                errors.append(following)
            if len(errors) >= 6:
                break
    tail = _tail_text(text, tail_lines) or "(empty)"
    if not errors:
        return tail
    return "first errors:\n" + "\n".join(errors) + "\nlast lines:\n" + tail


def _file_size(path: Path) -> int:
    """Return the size of ``path`` in bytes, 0 if it does not exist."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _new_cluster_id() -> str:
    """Return a random KRaft cluster id (a URL-safe base64 UUID, 22 chars)."""
    while True:
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii")
        # Like Kafka's Uuid.randomUuid: an id starting with "-" reads as an option.
        if not raw.startswith("-"):
            return raw.rstrip("=")


def _java() -> str:
    """Return the java executable, preferring ``$JAVA_HOME``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaBrokerError("kafka start failed: java is not on PATH")
    return java


def _parent_death_hook() -> Callable[[], None] | None:
    """Return a pre-exec hook that SIGTERMs the broker if this process dies."""
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only
    # used from the main thread, whose exit is the interpreter's exit.
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


class ApacheKafkaBroker:
    """A single-node Kafka broker (KRaft, broker and controller) in a subprocess."""

    def __init__(
        self,
        work_dir: Path,
        version: str = DEFAULT_VERSION,
        cache_dir: Path | None = None,
    ) -> None:
        """Prepare a broker whose config, data and logs live under ``work_dir``."""
        self.work_dir = Path(work_dir).resolve()
        self.version = version
        self.cache_dir = cache_dir
        self._port: int | None = None
        self._controller_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._cluster_id = _new_cluster_id()
        self._log_offsets = (0, 0)

    @property
    def bootstrap(self) -> str:
        """Return the bootstrap address ``127.0.0.1:PORT`` of the broker."""
        if self._port is None:
            raise KafkaBrokerError("kafka broker has not been started")
        return f"{HOST}:{self._port}"

    @property
    def data_dir(self) -> Path:
        """Return the directory holding the broker's log segments and metadata."""
        return self.work_dir / "data"

    @property
    def log_file(self) -> Path:
        """Return the broker's log4j log file."""
        return self.work_dir / "logs" / _SERVER_LOG

    @property
    def pid(self) -> int | None:
        """Return the broker process's id while it runs, else None."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        """Return whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 90.0) -> str:
        """Start the broker, wait until it serves requests, return the bootstrap."""
        if self.running:
            return self.bootstrap
        lib_dir = ensure_kafka_distribution(self.version, self.cache_dir)
        # The timeout covers the broker's startup, not a first-time download.
        deadline = time.monotonic() + timeout_s
        if self._port is None or self._controller_port is None:
            self._port = _free_port()
            self._controller_port = _free_port()
            while self._controller_port == self._port:
                self._controller_port = _free_port()
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "meta.properties").is_file():
            self._format(lib_dir, config)
        self._launch(lib_dir, config)
        try:
            self._wait_ready(deadline, timeout_s)
        except BaseException:
            self._terminate()
            raise
        return self.bootstrap

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after a grace period."""
        self._terminate()

    def restart(self) -> None:
        """Stop the broker and start it again on the same port and data."""
        self.stop()
        self.start()

    def __enter__(self) -> ApacheKafkaBroker:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def _java_command(self, lib_dir: Path, main_class: str) -> list[str]:
        """Return the ``java`` command line that runs ``main_class``."""
        log4j_config = self.work_dir / "log4j2.properties"
        return [
            _java(),
            HEAP,
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j_config}",
            f"-Dkafka.logs.dir={self.work_dir / 'logs'}",
            "-cp",
            f"{lib_dir}/*",
            main_class,
        ]

    def _write_config(self) -> Path:
        """Write server.properties and the log4j2 config, return the former."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_text(
            _LOG4J2_CONFIG.format(log_file=self.log_file)
        )
        port, controller_port = self._port, self._controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller_port}",
            "listeners": (
                f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
        }
        config = self.work_dir / "server.properties"
        config.write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items())
        )
        return config

    def _format(self, lib_dir: Path, config: Path) -> None:
        """Format the KRaft storage directory with a fresh cluster id."""
        command = [
            *self._java_command(lib_dir, "kafka.tools.StorageTool"),
            "format",
            "-t",
            self._cluster_id,
            "-c",
            str(config),
            "--ignore-formatted",
        ]
        logger.debug("formatting kafka storage in %s", self.data_dir)
        try:
            result = subprocess.run(
                command,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_FORMAT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaBrokerError(
                f"kafka storage format timed out after {_FORMAT_TIMEOUT_S:.0f}s"
            ) from exc
        if result.returncode != 0:
            raise KafkaBrokerError(
                f"kafka storage format failed (exit {result.returncode}):\n"
                f"{_tail_text(result.stdout + result.stderr)}"
            )

    def _launch(self, lib_dir: Path, config: Path) -> None:
        """Start ``kafka.Kafka`` in a new session, output going to a log file."""
        command = [*self._java_command(lib_dir, "kafka.Kafka"), str(config)]
        stdout_log = self.work_dir / "logs" / _STDOUT_LOG
        logger.info(
            "starting apache kafka %s on %s:%s (controller port %s) in %s",
            self.version,
            HOST,
            self._port,
            self._controller_port,
            self.work_dir,
        )
        self._log_offsets = (_file_size(self.log_file), _file_size(stdout_log))
        with stdout_log.open("ab") as output:
            try:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.work_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_parent_death_hook(),
                )
            except OSError as exc:
                raise KafkaBrokerError(f"kafka start failed: {exc}") from exc
        _LIVE_BROKERS.add(self)

    def _wait_ready(self, deadline: float, timeout_s: float) -> None:
        """Block until the broker answers a metadata request or fail."""
        last_error = "no connection yet"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise KafkaBrokerError(self._failure(f"kafka broker exited ({code})"))
            try:
                if self._answers_metadata(deadline):
                    logger.info("apache kafka ready at %s", self.bootstrap)
                    return
                last_error = "metadata lists no brokers"
            except Exception as exc:  # any failure means "not yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise KafkaBrokerError(
            self._failure(
                f"kafka broker not ready after {timeout_s:.0f}s ({last_error})"
            )
        )

    def _answers_metadata(self, deadline: float) -> bool:
        """Return whether the broker lists itself in a metadata response."""
        assert self._port is not None
        with socket.create_connection((HOST, self._port), timeout=1.0):
            pass
        # Imported here so that fetching the distribution needs no kafka-python.
        from kafka import KafkaAdminClient

        # Short timeouts, so that a broker that died meanwhile is noticed soon.
        timeout_ms = max(500, min(2000, int((deadline - time.monotonic()) * 1000)))
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="mentorflow-broker-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        return bool(cluster.get("brokers"))

    def _failure(self, what: str) -> str:
        """Return ``what`` followed by excerpts of this launch's broker logs."""
        stdout_log = self.work_dir / "logs" / _STDOUT_LOG
        server_text = _read_log(self.log_file, self._log_offsets[0])
        stdout_text = _read_log(stdout_log, self._log_offsets[1])
        return (
            f"{what}; work dir {self.work_dir}\n"
            f"--- {self.log_file} ---\n{_log_excerpt(server_text)}\n"
            f"--- {stdout_log} ---\n{_tail_text(stdout_text, 15) or '(empty)'}"
        )

    def _terminate(self) -> None:
        """Send SIGTERM, wait up to the grace period, then SIGKILL."""
        process, self._process = self._process, None
        _LIVE_BROKERS.discard(self)
        if process is None:
            return
        if process.poll() is None:
            logger.info("stopping apache kafka at %s", self.bootstrap)
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "kafka broker %s ignored SIGTERM for %.0fs; killing it",
                    self.bootstrap,
                    STOP_GRACE_S,
                )
                process.kill()
                process.wait()
        else:
            process.wait()


@atexit.register
def _stop_live_brokers() -> None:
    """Stop brokers that are still running when the interpreter exits."""
    for broker in list(_LIVE_BROKERS):
        with contextlib.suppress(Exception):
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the ``fetch`` or ``run`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.kafka_broker",
        description="Fetch or run the Apache Kafka broker used by the tests.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--version", default=DEFAULT_VERSION, help="kafka version")
    common.add_argument("--cache-dir", type=Path, default=None, help="download cache")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "fetch", parents=[common], help="download the broker jars and exit"
    )
    run = commands.add_parser(
        "run", parents=[common], help="start a broker and wait for Ctrl-C"
    )
    run.add_argument("--work-dir", type=Path, required=True, help="config and data")
    run.add_argument("--timeout", type=float, default=90.0, help="startup timeout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        if args.command == "fetch":
            print(ensure_kafka_distribution(args.version, args.cache_dir))
            return 0
        broker = ApacheKafkaBroker(args.work_dir, args.version, args.cache_dir)
        # SIGTERM ends the wait like Ctrl-C does, so the broker is stopped. SIGINT
        # is set too: a shell starting us in the background ignores it.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            print(broker.start(timeout_s=args.timeout), flush=True)
            while broker.running:
                time.sleep(0.5)
            logger.error("kafka broker exited; see %s", broker.log_file)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            broker.stop()
    except KafkaBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
