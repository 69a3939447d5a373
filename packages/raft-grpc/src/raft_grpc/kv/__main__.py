"""``python -m raft_grpc.kv serve ...`` (also the ``raft-kv`` console script): run one key-value node.

Logging is configured here, once, and nowhere else. See ``raft_grpc.kv.config`` for the flags.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from raft_core.errors import ConfigError as RaftConfigError
from raft_grpc.kv.config import ConfigError, parse_config
from raft_grpc.kv.server import node_options, serve


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, configure logging, and serve until a signal; returns the exit code."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
        node_options(config)  # raft-core validates the timing and snapshot values
    except (ConfigError, RaftConfigError) as exc:
        print(f"raft-kv: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        format=f"%(asctime)s %(levelname)s node{config.id} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
