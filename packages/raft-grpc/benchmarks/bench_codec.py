"""Micro-benchmark of the raft.v1 codec: µs per message, both ways, for an append batch and a heartbeat.

Run: ``python packages/raft-grpc/benchmarks/bench_codec.py`` (with raft-grpc installed). Prints the best of
several repeats (the least disturbed by other load), with raft-core's JSON stream codec for comparison.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from raft_core.messages import AppendEntries, Heartbeat
from raft_core.runtime import codec as json_codec
from raft_core.types import Entry
from raft_grpc import codec
from raft_grpc._gen.raft.v1 import raft_pb2 as pb


def best_us(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """The best time of ``repeat`` runs of ``number`` calls, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=64)
    parser.add_argument("--size", type=int, default=100, help="payload bytes per entry")
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    entries = tuple(Entry(7, 1001 + i, data=bytes(args.size)) for i in range(args.entries))
    append = AppendEntries(src=1, dst=2, term=7, prev_index=1000, prev_term=7, entries=entries, commit=990)
    heartbeat = Heartbeat(src=1, dst=2, term=7, commit=990, read_round=3)
    print(f"AppendEntries of {args.entries} x {args.size}-byte entries; µs per message (best of 7)")
    for name, m, number in (("AppendEntries", append, args.number), ("Heartbeat", heartbeat, args.number * 10)):
        data = codec.encode_message(m)
        parsed = pb.Message.FromString(data)
        framed = codec.frame_batch([data])
        as_json = json_codec.encode(m)
        rows = {
            "encode (to_proto + serialize)": lambda m=m: codec.encode_message(m),
            "  to_proto only": lambda m=m: codec.to_proto(m),
            "decode (parse + from_proto)": lambda data=data: codec.decode_message(data),
            "  from_proto only": lambda parsed=parsed: codec.from_proto(parsed),
            "decode_batch (framed, 1 message)": lambda framed=framed: codec.decode_batch(framed),
            "raft-core JSON codec encode": lambda m=m: json_codec.encode(m),
            "raft-core JSON codec decode": lambda raw=as_json: json_codec.decode(raw),
        }
        print(f"\n{name} ({len(data)} bytes on the wire)")
        for label, fn in rows.items():
            print(f"  {label:36s} {best_us(fn, number):9.2f}")


if __name__ == "__main__":
    main()
