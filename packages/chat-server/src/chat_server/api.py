"""The chat.v1 messages as typed pydantic dataclasses (betterproto2 output in ``_gen/api``), re-exported.

Handlers and tests use these; the grpcio-tools output in ``_gen/pb`` is kept for descriptors (reflection,
the method table of the gRPC adapter) and the wire contract test. Importing it makes betterproto2's parsing
check cheaper (``protofast``).
"""

from chat_server import protofast
from chat_server._gen.api.chat.v1 import *  # noqa: F403

protofast.install()
