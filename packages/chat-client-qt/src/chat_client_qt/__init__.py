"""chat_client_qt: the Qt desktop chat client (planned). Nothing is implemented yet."""

__version__ = "0.1.0"
