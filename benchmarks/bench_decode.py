"""ZTF decode speed on one core, for real alerts with their image cutouts, against a naive decoder.

    python benchmarks/bench_decode.py            # best of 5 passes
    python benchmarks/bench_decode.py --quick    # best of 2

Target: at least 2,000 alerts/s per core for ZTF messages with cutouts (about 60 kB each). The
messages are the repository's real ZTF alerts that kept their cutouts (data/ztf: 40 of the public
stream of 2018-07-13, the 3 official samples and the 4 Fink samples), each exactly the bytes of
one Kafka message (an Avro container file with the writer schema embedded). The reference is
fastavro.reader on each message, which parses the embedded schema and every field each time.
The machine is shared and noisy: each figure is the best of several passes.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import fastavro

from broker.decode_ztf import ZtfDecoder

DATA = Path(__file__).resolve().parent.parent / "data" / "ztf"


def messages_with_cutouts() -> list[bytes]:
    """Every repository ZTF alert that carries its three cutouts, as message bytes."""
    out = []
    for path in sorted(DATA.rglob("*.avro")):
        data = path.read_bytes()
        (record,) = fastavro.reader(io.BytesIO(data))
        if all(record.get(c) for c in ("cutoutScience", "cutoutTemplate", "cutoutDifference")):
            out.append(data)
    return out


def best_rate(decode: Callable[[bytes], object], messages: list[bytes], passes: int) -> float:
    """Best alerts per second over several passes through all messages."""
    decode(messages[0])
    best = 0.0
    for _ in range(passes):
        t0 = time.perf_counter()
        for m in messages:
            decode(m)
        best = max(best, len(messages) / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    passes = 2 if args.quick else 5
    messages = messages_with_cutouts()
    size = sum(map(len, messages)) / len(messages)
    decoder = ZtfDecoder()
    ours = best_rate(decoder, messages, passes)
    naive = best_rate(lambda m: list(fastavro.reader(io.BytesIO(m))), messages, passes)
    print(f"{len(messages)} ZTF alerts with cutouts, {size / 1000:.0f} kB each on average")
    print(f"broker.decode_ztf.ZtfDecoder: {ours:8.0f} alerts/s  (target >= 2000)")
    print(f"fastavro.reader, naive:   {naive:8.0f} alerts/s  (ratio {ours / naive:.2f}x)")


if __name__ == "__main__":
    main()
