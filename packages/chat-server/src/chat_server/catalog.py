"""The ``chat.v1`` services a node serves, by full name, with their descriptors (from the grpcio-tools output)."""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from chat_server._gen.pb.chat.v1 import chat_pb2, data_pb2, monitoring_pb2

MESSAGE_SERVICE = "chat.v1.MessageService"
DATA_SERVICE = "chat.v1.DataService"
MONITORING_SERVICE = "chat.v1.MonitoringService"

SERVICES: dict[str, ServiceDescriptor] = {
    MESSAGE_SERVICE: chat_pb2.DESCRIPTOR.services_by_name["MessageService"],
    DATA_SERVICE: data_pb2.DESCRIPTOR.services_by_name["DataService"],
    MONITORING_SERVICE: monitoring_pb2.DESCRIPTOR.services_by_name["MonitoringService"],
}
