"""Where schemas come from: our registry file, the official Rubin files, a Schema Registry.

Each schema is loaded and parsed once and cached; none is parsed per message.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastavro.schema

from broker.avro import (
    MAX_SCHEMA_BYTES,
    SCHEMA_DIR,
    DecodeError,
    frame,
    parse_untrusted_schema,
    read_body,
    unframe,
    write_body,
)


class SchemaRegistryUnavailable(RuntimeError):
    """The Schema Registry cannot be reached: an outage, not a bad message (never dead-letter)."""


@cache
def load_schema_file(path: Path) -> Any:
    """Load and parse a trusted .avsc file (named types resolved from its folder), once."""
    return fastavro.schema.load_schema(str(path))


class LocalRegistry:
    """Our own schemas, by Confluent id and by name, from schemas/registry.json."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.schema_dir = schema_dir
        entries = json.loads((schema_dir / "registry.json").read_text())["schemas"]
        self._by_id = {int(e["id"]): e for e in entries}
        self._latest: dict[str, int] = {}
        self._parsed: dict[int, Any] = {}  # per id: the hot path looks schemas up per message
        for e in sorted(entries, key=lambda e: tuple(map(int, e["version"].split(".")))):
            self._latest[e["name"]] = int(e["id"])

    def entry(self, schema_id: int) -> dict[str, Any] | None:
        """The registry.json entry of an id (name, version, path), or None when not ours."""
        return self._by_id.get(schema_id)

    def latest_id(self, name: str) -> int:
        """Id of the newest version of a schema name (what the encoder writes)."""
        return self._latest[name]

    def schema(self, schema_id: int, name: str | None = None) -> Any:
        """Parsed schema of an id, checking it belongs to `name` when given."""
        entry = self._by_id.get(schema_id)
        if entry is None or (name is not None and entry["name"] != name):
            raise DecodeError(
                "unknown_schema",
                f"schema id {schema_id} is not a registered {name or 'dmdt'} schema",
            )
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = self._parsed[schema_id] = load_schema_file(self.schema_dir / entry["path"])
        return parsed

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """A Confluent-framed body of the record, in the newest registered version of `name`."""
        schema_id = self.latest_id(name)
        return frame(schema_id, write_body(self.schema(schema_id), record))

    def decode(self, data: bytes, name: str) -> dict[str, Any]:
        """A framed record of schema `name`, in any registered version, read as the newest."""
        schema_id, body = unframe(data)
        writer = self.schema(schema_id, name)
        reader = self.schema(self.latest_id(name))
        return read_body(body, writer, None if writer is reader else reader)  # type: ignore[no-any-return]


@cache
def _registry(schema_dir: Path) -> LocalRegistry:
    return LocalRegistry(schema_dir)


def local_registry(schema_dir: Path = SCHEMA_DIR) -> LocalRegistry:
    """The (cached) local registry of a schema folder."""
    return _registry(schema_dir.resolve())


def rubin_local_schema(schema_id: int, schema_dir: Path = SCHEMA_DIR) -> Any:
    """Official Rubin schema of an id (100 * major + minor) from schemas/rubin/<major>/<minor>/."""
    major, minor = divmod(schema_id, 100)
    path = schema_dir / "rubin" / str(major) / str(minor) / f"lsst.v{major}_{minor}.alert.avsc"
    if not path.is_file():
        raise DecodeError("unknown_schema", f"no local Rubin schema for id {schema_id} ({path})")
    return load_schema_file(path)


class HttpSchemaRegistry:
    """Confluent Schema Registry client: GET /schemas/ids/{id}, parsed once and cached."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        retry_unknown_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_unknown_s = retry_unknown_s
        self._clock = clock or time.monotonic
        self._cache: dict[int, Any] = {}  # id -> parsed schema, or the DecodeError it raised
        self._unknown: OrderedDict[int, float] = OrderedDict()  # id -> when seen unknown
        self._lock = threading.Lock()

    def schema(self, schema_id: int) -> Any:
        """Parsed writer schema of an id; DecodeError('unknown_schema') on 404, else an outage."""
        cached = self._cache.get(schema_id)
        if isinstance(cached, DecodeError):
            raise DecodeError(cached.reason, cached.message)
        if cached is not None:
            return cached
        with self._lock:
            seen = self._unknown.get(schema_id)
            if seen is not None and self._clock() - seen < self.retry_unknown_s:
                raise DecodeError("unknown_schema", f"schema id {schema_id} not in registry")
        text = self._fetch(schema_id)
        try:
            parsed = parse_untrusted_schema(text)
        except DecodeError as exc:
            self._cache[schema_id] = exc
            raise
        self._cache[schema_id] = parsed
        return parsed

    def _fetch(self, schema_id: int) -> str:
        request = urllib.request.Request(  # noqa: S310 (the URL is the operator's setting)
            f"{self.url}/schemas/ids/{schema_id}",
            headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                body = response.read(MAX_SCHEMA_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                with self._lock:
                    self._unknown[schema_id] = self._clock()
                    while len(self._unknown) > 1024:
                        self._unknown.popitem(last=False)
                raise DecodeError(
                    "unknown_schema", f"schema id {schema_id} not in registry {self.url}"
                ) from exc
            raise SchemaRegistryUnavailable(f"{self.url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaRegistryUnavailable(f"{self.url}: {exc}") from exc
        try:
            text = json.loads(body)["schema"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaRegistryUnavailable(
                f"{self.url}: unreadable answer for id {schema_id}"
            ) from exc
        if not isinstance(text, str):
            raise SchemaRegistryUnavailable(f"{self.url}: schema of id {schema_id} not a string")
        return text
