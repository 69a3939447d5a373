"""chat_server: the replicated chat service built on Raft (planned). Nothing is implemented yet."""

__version__ = "0.1.0"
