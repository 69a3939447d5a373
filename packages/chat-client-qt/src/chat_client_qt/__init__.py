"""chat-client-qt: the chat service's desktop client; ``chat_client_qt.client`` is its Qt-free library."""

__version__ = "0.1.0"
