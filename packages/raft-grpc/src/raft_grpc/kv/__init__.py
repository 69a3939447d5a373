"""raft_grpc.kv: a replicated key-value service (``kv.v1.DataService``) on raft-core and raft-grpc.

``KvStateMachine`` is the replicated store, ``KvService`` the gRPC servicer over a raft-core ``Node``,
``KvServer`` the process (``python -m raft_grpc.kv serve ...`` or ``raft-kv serve ...``) and ``KvClient``
the client library that finds the leader and retries writes exactly once.
"""

from raft_grpc.kv.client import CasResult, KvClient
from raft_grpc.kv.config import ConfigError, ServerConfig, parse_config
from raft_grpc.kv.errors import KvError, KvInvalidArgument, KvSessionExpired, KvUnavailable
from raft_grpc.kv.server import KvServer
from raft_grpc.kv.service import KvService
from raft_grpc.kv.state_machine import MAX_KEY_BYTES, MAX_VALUE_BYTES, KvStateMachine

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "CasResult",
    "ConfigError",
    "KvClient",
    "KvError",
    "KvInvalidArgument",
    "KvServer",
    "KvService",
    "KvSessionExpired",
    "KvStateMachine",
    "KvUnavailable",
    "ServerConfig",
    "parse_config",
]
