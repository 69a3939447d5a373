"""The gRPC handlers of the chat node: ``MessageHandlers``, ``DataHandlers``, ``MonitoringHandlers``."""
