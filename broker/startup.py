"""Start-up checks of the commands that talk to Kafka: one line that says what failed, the
address tried and the setting to change, instead of a client that retries and logs forever.

`check_kafka` waits at most ``connect_timeout_s`` for the cluster to answer, stops at once when
it refuses the credentials or the TLS handshake, and checks that the topics a command needs
exist. Failures raise `StartupError`; the command lines print its message and exit
`EXIT_STARTUP`.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.kafka_admin import ClusterUnavailable, cluster_topics
from broker.settings import BrokerSettings

EXIT_STARTUP = 3  # exit status of a command that could not start (distinct from 1 and 2)
BOOTSTRAP_SETTINGS = "DMDT_BOOTSTRAP_SERVERS (or KAFKA_BOOTSTRAP, --bootstrap-servers)"
LOCAL_BROKER_HINT = "`dmdt-broker local-kafka` starts one on this machine"


class StartupError(RuntimeError):
    """A command cannot start; the message is one line naming the setting to change."""


def _redacted(settings: BrokerSettings, text: str) -> str:
    """text without any secret value of the settings (librdkafka's errors never hold one, but a
    start-up message must not depend on that)."""
    plain, masked = settings.kafka_config(), settings.kafka_config(redact=True)
    for key, value in plain.items():
        if value and masked.get(key) != value:
            text = text.replace(value, masked[key])
    return text


def unavailable_message(settings: BrokerSettings, exc: ClusterUnavailable) -> str:
    """The one line for a cluster that did not answer or refused this client."""
    where = settings.bootstrap_servers
    detail = _redacted(settings, exc.detail)
    if exc.kind == "authentication":
        return (
            f"Kafka at {where} refused this client's credentials ({detail}): check "
            "DMDT_SECURITY_PROTOCOL, DMDT_SASL_MECHANISM, DMDT_SASL_USERNAME and "
            "DMDT_SASL_PASSWORD"
        )
    if exc.kind == "tls":
        return (
            f"the TLS handshake with Kafka at {where} failed ({detail}): check "
            "DMDT_SECURITY_PROTOCOL, DMDT_SSL_CA_LOCATION and the ssl.* keys of DMDT_KAFKA_EXTRA"
        )
    if exc.kind == "settings":
        return (
            f"the Kafka client refused these settings ({detail}): check "
            "DMDT_SECURITY_PROTOCOL, DMDT_SASL_MECHANISM and DMDT_KAFKA_EXTRA"
        )
    return (
        f"no Kafka broker answered at {where} within {settings.connect_timeout_s:g} s (last "
        f"error: {detail}): check {BOOTSTRAP_SETTINGS}; {LOCAL_BROKER_HINT}; "
        "DMDT_CONNECT_TIMEOUT_S waits longer"
    )


def check_kafka(settings: BrokerSettings, topics: Mapping[str, str]) -> dict[str, int]:
    """Partitions of every topic once the cluster answers; StartupError when it does not, or
    when one of ``topics`` (topic -> the setting that names it) is missing."""
    try:
        found = cluster_topics(settings, settings.connect_timeout_s)
    except ClusterUnavailable as exc:
        raise StartupError(unavailable_message(settings, exc)) from None
    missing = [f"{topic!r} ({setting})" for topic, setting in topics.items() if topic not in found]
    if missing:
        raise StartupError(
            f"{'topic' if len(missing) == 1 else 'topics'} {', '.join(missing)} not found on "
            f"{settings.bootstrap_servers}: create {'it' if len(missing) == 1 else 'them'} "
            f"({LOCAL_BROKER_HINT} with the topics of these settings) or change the setting"
        )
    return found


def run_topics(settings: BrokerSettings) -> dict[str, str]:
    """The topics `dmdt-broker run` needs, each with the setting that names it."""
    topics = {t: "DMDT_INPUT_TOPICS or --input" for t in settings.input_topics}
    topics[settings.output_topic] = "DMDT_OUTPUT_TOPIC or --output"
    topics[settings.dead_letter_topic] = "DMDT_DEAD_LETTER_TOPIC or --dead-letter"
    return topics
