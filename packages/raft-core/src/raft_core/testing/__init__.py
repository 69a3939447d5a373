"""Test support shipped with raft-core: an in-memory node harness, a deterministic network and a simulator.

Nothing here does real I/O either: tests built on it need no sockets, threads or sleeps.
"""
