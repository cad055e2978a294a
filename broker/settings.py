"""One frozen settings object for the broker, read from the environment (prefix DMDT_) and flags.

`KAFKA_BOOTSTRAP` is honoured as the bootstrap servers when DMDT_BOOTSTRAP_SERVERS is unset.
Secrets are `SecretStr` (the SASL password, and the passthrough's credential keys): they never
appear in repr, str or logs; `kafka_config()` is the one place that renders librdkafka's dotted
keys, and only its return value carries them. No validation error prints the values it was given
(`hide_input_in_errors`, and the parsers name a bad entry by its position).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broker.avro import SCHEMA_DIR
from broker.decode import DECODER_NAMES

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]
_SECRET_KEYS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret")


def _pairs(text: str, sep: str, what: str) -> dict[str, str]:
    """Parse 'a<sep>b,c<sep>d' (whitespace ignored) into a dict. An error names the entry by its
    position, never by its text: it may hold a secret."""
    out: dict[str, str] = {}
    for n, item in enumerate(filter(None, (part.strip() for part in text.split(","))), 1):
        key, found, value = item.partition(sep)
        if not found or not key.strip() or not value.strip():
            raise ValueError(f"bad {what} entry number {n}: expected KEY{sep}VALUE")
        out[key.strip()] = value.strip()
    return out


def _hide(key: str, value: str | SecretStr) -> str | SecretStr:
    """A passthrough value as SecretStr when its key is a credential."""
    return (
        SecretStr(str(value)) if key in _SECRET_KEYS and not isinstance(value, SecretStr) else value
    )


def _shown(value: str | SecretStr) -> str:
    return "**********" if isinstance(value, SecretStr) else value


class BrokerSettings(BaseSettings):
    """Everything the broker's run loop needs: Kafka, topics, batching, model, metrics, state."""

    model_config = SettingsConfigDict(
        env_prefix="DMDT_",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        protected_namespaces=(),
        hide_input_in_errors=True,  # a validation error never prints what was given (secrets)
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "bootstrap_servers", "DMDT_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP"
        ),
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    # Passthrough librdkafka keys, e.g. DMDT_KAFKA_EXTRA='socket.keepalive.enable=true,
    # linger.ms=20' or a JSON object; applied to every client that knows the key (by
    # librdkafka's scope table: broker.kafka_conf.property_scopes), after the keys above.
    # The values of credential keys (sasl.password, ssl.key.password, ...) are held as SecretStr.
    kafka_extra: Annotated[dict[str, str | SecretStr], NoDecode] = Field(default_factory=dict)
    client_id: str = "dmdt-broker"
    # How long a command waits at start for the cluster to answer before it gives up (exit 3).
    connect_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    # topic -> decoder name, e.g. DMDT_INPUT_TOPICS='ztf-alerts:ztf,lc-alerts:lightcurve'
    input_topics: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {"lc-alerts": "lightcurve"}
    )
    output_topic: str = "dmdt-classifications"
    # one record per object and batch, its bands combined (classification 1.2, scope "object");
    # empty: not published
    object_topic: str = "dmdt-objects"
    dead_letter_topic: str = "dmdt-dead-letters"
    group_id: str = "dmdt-broker"
    strict: bool = False  # raise on a bad message instead of dead-lettering it (tests)

    batch_size: int = Field(256, ge=1, le=100_000)
    batch_wait_ms: int = Field(200, ge=0, le=60_000)

    model: str = "default"  # a model directory, a registry directory, or `default`
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model_check_s: float = Field(default=1.0, gt=0)  # how often a registry's CURRENT is checked
    min_points: int | None = Field(default=None, ge=2)  # None: the model's training min_points
    torch_threads: int = Field(default=0, ge=0)  # inference intra-op threads; 0: torch's default
    # A record's thresholded_class is "unknown" when its top class probability is below this
    # (its probabilities are published either way); 0: never "unknown". docs/calibration.md
    # measured 0.5 on the calibrated 7-class model; the CNN's probabilities are not calibrated.
    min_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    # Hybrid models (broker.features): a source's feature vector is recomputed when it has none,
    # grew by feature_refresh_fraction of its points or by feature_refresh_points points (0: off)
    # since the last refresh, or on every batch that added a point with feature_refresh_always;
    # refreshes of a batch stop after feature_budget_ms (0: no budget; ignored by _always).
    feature_refresh_fraction: float = Field(default=0.10, ge=0.0, le=100.0)
    feature_refresh_points: int = Field(default=0, ge=0)
    feature_refresh_always: bool = False
    feature_budget_ms: int = Field(default=500, ge=0, le=600_000)
    feature_threads: int = Field(default=1, ge=1, le=64)
    feature_cache_rows: int = Field(default=200_000, ge=1)
    # Survey photometry (docs/surveys.md): add the forced photometry alerts carry (ZTF fp_hists,
    # Rubin prvDiaForcedSources) to total light curves
    forced_photometry: bool = True

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)  # 0: any free port (the bound one is shown)

    schema_registry_url: str | None = None
    schema_dir: Path = SCHEMA_DIR
    state_dir: Path = Path("state")
    # Per-source state: `rocksdb` (durable, in state_dir/<group_id>/) or `memory` (lost on exit).
    state_store: Literal["rocksdb", "memory"] = "rocksdb"
    state_changelog: bool = True  # also write rows to <group>-<topic>-changelog (rebalancing)
    state_cache_rows: int = Field(100_000, ge=1)  # rows (source, band) held in memory at most
    state_sync: bool = False  # fsync the store's log after every batch

    @field_validator("kafka_extra", mode="before")
    @classmethod
    def _parse_extra(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except ValueError:  # json's message quotes no input; say less anyway
                    raise ValueError("kafka_extra is not a valid JSON object") from None
                if not isinstance(value, dict):
                    raise ValueError("kafka_extra is not a valid JSON object")
            else:
                value = _pairs(text, "=", "kafka_extra")
        if isinstance(value, dict):
            return {str(k): _hide(str(k), v if isinstance(v, SecretStr) else str(v))
                    for k, v in value.items()}  # fmt: skip
        return value

    @field_validator("input_topics", mode="before")
    @classmethod
    def _parse_topics(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _pairs(value, ":", "input_topics")
        return value

    @field_validator("input_topics")
    @classmethod
    def _check_decoders(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("no input topic")
        for topic, decoder in value.items():
            if decoder not in DECODER_NAMES:
                raise ValueError(
                    f"topic {topic!r}: unknown decoder {decoder!r}; expected one of "
                    f"{', '.join(DECODER_NAMES)}"
                )
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("schema_registry_url must start with http:// or https://")
        return value or None

    @model_validator(mode="after")
    def _check_sasl(self) -> BrokerSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        return self

    def kafka_config(self, *, redact: bool = False) -> dict[str, str]:
        """librdkafka's dotted keys common to every client; `redact=True` masks secrets for logs."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        conf.update({k: v.get_secret_value() if isinstance(v, SecretStr) else v
                     for k, v in self.kafka_extra.items()})  # fmt: skip
        if redact:
            conf = {k: "**********" if k in _SECRET_KEYS else v for k, v in conf.items()}
        return conf

    @field_serializer("kafka_extra")
    def _dump_extra(self, value: dict[str, str | SecretStr]) -> dict[str, str]:
        """model_dump / model_dump_json mask passthrough secrets, as SecretStr fields are."""
        return {k: _shown(v) for k, v in value.items()}
