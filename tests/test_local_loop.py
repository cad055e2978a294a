"""The local loop of dmdt-broker: local-kafka, send, read, against a real Kafka-protocol broker, and
the records read back checked against the files (read with fastavro and the CSV reader)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from stream_helpers import newest_format

from broker.avro import frame, write_body
from broker.cli import main
from broker.encode import (
    Classification,
    DeadLetter,
    encode_classification,
    encode_dead_letter,
    encode_record,
)
from broker.health import probe
from broker.kafka import Record
from broker.kafka_admin import topic_partitions
from broker.registry import load_schema_file
from broker.settings import BrokerSettings
from broker.tools.message_json import MessageReader, jsonable
from broker.tools.testing import free_port, unique_name
from dmdt.lightcurves import clean, read_crts_csv

REPO = Path(__file__).resolve().parent.parent
DMDT_BROKER = str(Path(sys.executable).with_name("dmdt-broker"))
CRTS_CSV = sorted((REPO / "tests" / "data" / "crts").glob("*.csv"))


@pytest.fixture
def cli(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run `dmdt-broker ARGS` in this process against the test cluster: (status, out, err)."""
    monkeypatch.delenv("DMDT_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("DMDT_METRICS_PORT", "0")  # `run` serves them before its Kafka check

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def read_json(cli: Callable[..., tuple[int, str, str]], topic: str, n: int) -> list[dict[str, Any]]:
    status, out, err = cli("read", topic, "--limit", str(n), "--bytes", "-1")
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("command", ["local-kafka", "send", "read"])
def test_help_explains_each_command(command: str) -> None:
    result = subprocess.run(
        [DMDT_BROKER, command, "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "examples:" in result.stdout
    assert {"local-kafka": "Tansu", "send": "<id>-<class>.csv", "read": "dead letters"}[
        command
    ] in result.stdout


# ---------------------------------------------------------------- send + read


def test_light_curves_sent_and_read_back(
    cli: Callable[..., tuple[int, str, str]], make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Each CSV light curve goes out as one lightcurve_alert carrying its whole cleaned curve."""
    folder = tmp_path / "curves"
    folder.mkdir()
    for path in CRTS_CSV:
        shutil.copy(path, folder / path.name)
    short = read_crts_csv(CRTS_CSV[0])
    (folder / "9999-EW.csv").write_text(
        '"ID","MJD","mag","magerr","RA","Dec"\n9999,53000.1,15.2,0.05,1.0,2.0\n'
    )
    topic = make_topic(partitions=2)
    status, out, err = cli("send", str(folder), "--topic", topic)
    assert status == 0, err
    assert f"sent {len(CRTS_CSV)} messages (light curves of {len(CRTS_CSV)} sources" in out
    assert "9999-EW.csv: no light curve with 20 points after cleaning" in err
    lines = read_json(cli, topic, len(CRTS_CSV))
    by_id = {line["key"]: line for line in lines}
    assert short.source_id in by_id
    for path in CRTS_CSV:
        expected, _ = clean(read_crts_csv(path), 20)
        assert expected is not None
        line = by_id[expected.source_id]
        assert line["format"] == newest_format("lightcurve_alert")
        alert = line["value"]
        assert (alert["source_id"], alert["label"], alert["band"]) == (
            expected.source_id, expected.label, "V",
        )  # fmt: skip
        detections = alert["detections"][::-1]  # newest first on the wire
        np.testing.assert_array_equal([d["mjd"] for d in detections], expected.t)
        np.testing.assert_array_equal([d["mag"] for d in detections], expected.m)
        assert alert["alert_time"] == expected.t[-1]


def test_ztf_and_rubin_files_sent_as_the_surveys_publish_them(
    cli: Callable[..., tuple[int, str, str]],
    make_topic: Callable[..., str],
    ztf_files: list[Path],
    rubin_file: Path,
) -> None:
    ztf = [p for p in ztf_files if "with_cutouts" in str(p)][:5]
    ztf_topic, rubin_topic = make_topic(), make_topic()
    status, out, err = cli("send", *map(str, ztf), "--topic", ztf_topic)
    assert status == 0, err
    status, out, err = cli("send", str(rubin_file), "--topic", rubin_topic)
    assert status == 0, err
    assert "sent 7 messages (Rubin alerts" in out

    for line, path in zip(read_json(cli, ztf_topic, len(ztf)), ztf, strict=True):
        with path.open("rb") as fh:
            (record,) = list(fastavro.reader(fh))
        assert line["format"] == "ztf"
        assert line["key"] == record["objectId"]
        value = line["value"]
        assert (value["candid"], value["candidate"]["magpsf"]) == (
            record["candid"], record["candidate"]["magpsf"],
        )  # fmt: skip
        cutout = value["cutoutScience"]["stampData"]
        assert cutout["bytes"] == len(record["cutoutScience"]["stampData"])

    with rubin_file.open("rb") as fh:
        fink = list(fastavro.reader(fh))
    lines = read_json(cli, rubin_topic, len(fink))
    assert {line["format"] for line in lines} == {"rubin/10.0"}
    assert sorted(line["value"]["diaSourceId"] for line in lines) == sorted(
        r["diaSourceId"] for r in fink
    )
    first = next(
        line["value"] for line in lines if line["value"]["diaSourceId"] == fink[0]["diaSourceId"]
    )
    assert len(first["prvDiaSources"]) == len(fink[0]["prvDiaSources"])


def test_send_refuses_what_the_consumer_would_dead_letter_and_mixed_kinds(
    cli: Callable[..., tuple[int, str, str]], make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic()
    broken = tmp_path / "broken.avro"
    broken.write_bytes(b"not avro at all")
    status, _, err = cli("send", str(broken), "--topic", topic)
    assert status == 2
    assert "broken.avro: not an Avro container file" in err
    status, _, err = cli("send", str(CRTS_CSV[0]), str(REPO / "data" / "rubin"), "--topic", topic)
    assert status == 2
    assert "files of several kinds (lightcurve, rubin)" in err
    status, _, err = cli("send", "--raw", str(broken))
    assert status == 2
    assert "--raw needs --topic" in err
    status, _, err = cli("send", str(CRTS_CSV[0]), "--topic", unique_name("missing"))
    assert status == 3
    assert "not found on" in err
    assert "(--topic)" in err


def test_dead_letters_read_with_their_reason(
    cli: Callable[..., tuple[int, str, str]], make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """The dead letter of a raw file sent to a ZTF topic, as the consumer writes it."""
    topic = make_topic()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"plain text, not an alert")
    status, _, err = cli("send", "--raw", str(garbage), "--topic", topic)
    assert status == 0, err
    (line,) = read_json(cli, topic, 1)
    assert (line["key"], line["format"]) == ("garbage", None)
    assert "bad_magic" in line["error"]
    assert line["value"] == jsonable(b"plain text, not an alert", -1)
    letter = DeadLetter(
        raw=bytes(range(200)), key=b"garbage", topic=topic, partition=0, offset=0,
        decoder="ztf", reason="not_avro", error="not_avro: no 'Obj\\x01' magic",
        timestamp=1_700_000_000_123,
    )  # fmt: skip
    reader = MessageReader(bytes_limit=16)
    out = reader.to_json(Record("dlq", 0, 5, b"garbage", encode_dead_letter(letter), None))
    assert out["format"] == newest_format("dead_letter")
    value = out["value"]
    assert (value["reason"], value["error"], value["decoder"]) == (
        "not_avro", letter.error, "ztf",
    )  # fmt: skip
    assert value["raw"] == {**jsonable(bytes(range(16))), "bytes": 200, "truncated": True}
    assert value["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_read_decodes_every_registered_version_from_the_registry(tmp_path: Path) -> None:
    """A schema version (or a new schema) added to registry.json decodes with no code change."""
    schemas = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", schemas)
    entries = json.loads((schemas / "registry.json").read_text())
    summary = {
        "type": "record",
        "name": "source_summary",
        "namespace": "dmdt",
        "fields": [
            {"name": "source_id", "type": "string"},
            {"name": "classes", "type": {"type": "array", "items": "string"}},
            {"name": "updated", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    (schemas / "source_summary" / "1" / "0").mkdir(parents=True)
    (schemas / "source_summary" / "1" / "0" / "source_summary.avsc").write_text(json.dumps(summary))
    entries["schemas"].append({
        "id": 10400, "name": "source_summary", "version": "1.0",
        "path": "source_summary/1/0/source_summary.avsc",
    })  # fmt: skip
    (schemas / "registry.json").write_text(json.dumps(entries))
    reader = MessageReader(schema_dir=schemas)
    record = {"source_id": "ZTF18a", "classes": ["EW", "RRab"], "updated": 1_700_000_000_000}
    data = encode_record("source_summary", record, schemas)
    assert data[:5] == b"\x00\x00\x00\x28\xa0"  # id 10400
    assert reader.decode(data) == (
        "source_summary/1.0",
        {**record, "updated": reader.decode(data)[1]["updated"]},
    )
    assert jsonable(reader.decode(data)[1])["updated"] == "2023-11-14T22:13:20.000Z"
    # every version of our own schemas, as registered
    c = Classification(
        "dmdt-cnn", "1", "ab", "ztf", "ZTF18a", 7, "g", 30, {"EW": 0.75, "EA": 0.25},
        58000.5, 1_700_000_000_000, 1_700_000_000_001, thresholded_class="EW",
    )  # fmt: skip
    fmt, value = reader.decode(encode_classification(c))
    assert fmt == newest_format("classification")
    assert (value["predicted_class"], value["thresholded_class"]) == ("EW", "EW")
    v10 = REPO / "schemas" / "classification" / "1" / "0"
    with (v10 / "sample_data" / "samples.avro").open("rb") as fh:
        sample = next(iter(fastavro.reader(fh)))
    written = frame(10200, write_body(load_schema_file(v10 / "classification.avsc"), sample))
    fmt, value = reader.decode(written)
    assert fmt == "classification/1.0"
    assert value == sample
    assert "thresholded_class" not in value  # read as written, not as the newest version
    assert reader.decode(b"\x00\x00\x00\x99\x99abc")[0] is None


def test_jsonable_keeps_json_valid() -> None:
    value = jsonable({"a": float("nan"), "b": [float("inf"), -float("inf")], "c": b"\x00\x01"})
    assert value == {
        "a": "NaN",
        "b": ["Infinity", "-Infinity"],
        "c": {"bytes": 2, "base64": "AAE="},
    }
    json.dumps(value, allow_nan=False)


# ---------------------------------------------------------------- start-up errors


def test_unreachable_kafka_is_one_line_naming_the_address_and_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DMDT_CONNECT_TIMEOUT_S", "1.5")
    monkeypatch.setenv("DMDT_METRICS_PORT", "0")
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    for command in (["run"], ["read", "some-topic"], ["send", str(CRTS_CSV[0])]):
        assert main([*command, "--bootstrap-servers", dead]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        if command == ["run"]:  # its start line first: what it was about to do
            assert err.pop(0).startswith("dmdt-broker run: lc-alerts:lightcurve -> ")
        assert len(err) == 1, err
        err = err[0]
        assert f"no Kafka broker answered at {dead} within 1.5 s" in err
        assert "Connection refused" in err
        assert "DMDT_BOOTSTRAP_SERVERS" in err
        assert "dmdt-broker local-kafka" in err
    assert time.monotonic() - started < 3 * 1.5 + 30  # bounded: no retrying forever


def test_refused_credentials_stop_at_once_and_echo_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tansu with --authentication refuses a SASL client: one line naming the SASL settings."""
    from broker.tools.testing import TansuBroker, tansu_binary

    if tansu_binary() is None:
        pytest.skip("Tansu binary missing")
    with TansuBroker(extra_args=("--authentication",)) as broker:
        for key, value in {
            "DMDT_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "DMDT_SASL_MECHANISM": "PLAIN",
            "DMDT_SASL_USERNAME": "dmdt",
            "DMDT_SASL_PASSWORD": "s3cret-pa55word",
            "DMDT_CONNECT_TIMEOUT_S": "60",
        }.items():
            monkeypatch.setenv(key, value)
        started = time.monotonic()
        assert main(["read", "anything", "--bootstrap-servers", broker.bootstrap]) == 3
        assert time.monotonic() - started < 30  # not the 60 s of an unreachable cluster
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"Kafka at {broker.bootstrap} refused this client's credentials" in err
    assert "DMDT_SASL_PASSWORD" in err
    assert "s3cret-pa55word" not in err


def test_missing_topics_name_their_settings(
    cli: Callable[..., tuple[int, str, str]], make_topic: Callable[..., str]
) -> None:
    present = make_topic()
    status, _, err = cli(
        "run", "--input", f"{present}:lightcurve", "--input", "no-such-input:ztf",
        "--output", "no-such-output", "--dead-letter", present,
    )  # fmt: skip
    assert status == 3
    start, failure = err.strip().splitlines()  # the start line, then why it stops
    assert start.startswith("dmdt-broker run: ")
    assert failure.startswith("dmdt-broker run: cannot start: topics ")
    assert "topics 'no-such-input' (DMDT_INPUT_TOPICS or --input), 'no-such-output' " in err
    assert "(DMDT_OUTPUT_TOPIC or --output) not found on" in err
    assert "dmdt-broker local-kafka" in err


def test_busy_metrics_port_is_one_line_naming_port_and_setting(
    cli: Callable[..., tuple[int, str, str]], make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = [make_topic(), make_topic(), make_topic()]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, err = cli(
            "run", "--input", f"{topics[0]}:lightcurve", "--output", topics[1],
            "--dead-letter", topics[2], "--metrics-port", str(port), "--device", "cpu",
        )  # fmt: skip
    assert status == 3
    assert len(err.strip().splitlines()) == 1, err
    assert f"metrics port 127.0.0.1:{port} is already in use" in err
    assert "DMDT_METRICS_PORT or --metrics-port" in err


def test_run_with_metrics_port_0_reports_the_port_it_bound(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = [make_topic(), make_topic(), make_topic()]
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "DMDT_STATE_DIR": str(tmp_path),
           "DMDT_KAFKA_EXTRA": "session.timeout.ms=6000,heartbeat.interval.ms=1000"}  # fmt: skip
    env.pop("DMDT_BOOTSTRAP_SERVERS", None)
    proc = subprocess.Popen(
        [DMDT_BROKER, "run", "--input", f"{topics[0]}:lightcurve", "--output", topics[1],
         "--dead-letter", topics[2], "--metrics-port", "0", "--device", "cpu",
         "--group", unique_name("group")],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "metrics on http://127.0.0.1:" in line, line
        url = line.rsplit("metrics on ", 1)[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        assert port > 0
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"dmdt_messages_dead_lettered" in response.read()
        ready = url.replace("/metrics", "/readyz")
        deadline = time.monotonic() + 90
        while not probe(ready):  # partitions assigned: past the start-up check, in the loop
            assert proc.poll() is None
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


# ---------------------------------------------------------------- local-kafka


def test_local_kafka_serves_the_topics_of_a_run_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "DMDT_INPUT_TOPICS": "lc-alerts:lightcurve,ztf-alerts:ztf",
        "DMDT_OUTPUT_TOPIC": "out",
    }
    env.pop("DMDT_BOOTSTRAP_SERVERS", None)
    proc = subprocess.Popen(
        [DMDT_BROKER, "local-kafka", "--topic", "extra:3", "--partitions", "4"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"Tansu on 127.0.0.1:{port}" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        found = topic_partitions(BrokerSettings(bootstrap_servers=f"127.0.0.1:{port}"))
        assert {t: found[t] for t in ("lc-alerts", "ztf-alerts", "out", "dmdt-dead-letters",
                                      "extra")} == {
            "lc-alerts": 4, "ztf-alerts": 4, "out": 4, "dmdt-dead-letters": 1, "extra": 3,
        }  # fmt: skip
        second = subprocess.run(
            [DMDT_BROKER, "local-kafka"], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 3
        assert f"127.0.0.1:{port} is already in use" in second.stderr
        assert "--port" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    with socket.socket() as sock:  # the port is free again: the broker is gone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_start_up_compiles_the_kernels_of_the_first_batch() -> None:
    """After `broker.state.warm_up` (App does it at start), a real batch of updates compiles no
    new kernel: on a fresh install the ~30 s of numba compilation happen before the consumer
    says it is ready, not in its first batch. In a fresh process, so that nothing ran before."""
    script = """
import numpy as np
from dmdt import incremental, kernels
from dmdt.grids import get_grid
from broker.state import MemoryState, warm_up
from stream_helpers import crts_curves

def compiled():
    return {name: len(getattr(mod, name).signatures) for mod in (incremental, kernels)
            for name in dir(mod) if hasattr(getattr(mod, name), "signatures")}

before = compiled()
grid = get_grid("mahabal2017")
warm_up(grid)
warmed = compiled()
state = MemoryState(grid)
curves = crts_curves(5)
keys = [(lc.source_id, "V") for lc in curves]
offsets = np.cumsum([0] + [len(lc) for lc in curves])
rows = state.update(keys, [("t", 0)] * 5, np.concatenate([lc.t for lc in curves]),
                    np.concatenate([lc.m for lc in curves]),
                    np.concatenate([lc.err for lc in curves]), offsets)
state.counts(np.unique(rows))
assert sum(warmed.values()) > sum(before.values()), (before, warmed)
assert compiled() == warmed, (warmed, compiled())
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO / "tests", capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
