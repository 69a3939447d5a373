"""Mutual TLS between two transports, with certificates made by the openssl commands of the README."""

from __future__ import annotations

import shutil
import subprocess
from contextlib import AsyncExitStack

import grpc
import pytest
from grpc_helpers import SECRET, Recorder, eventually, member_metadata, raw_stream, run

from raft_core.messages import Heartbeat
from raft_grpc import GrpcTransport, TlsConfig, TransportOptions, codec

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

EXTENSIONS = (
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
)


def make_certificates(directory, nodes):
    """A cluster CA and one certificate per node, exactly as packages/raft-grpc/README.md shows."""

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "3650", "-subj", "/CN=raft-cluster-ca", "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "node.ext").write_text(EXTENSIONS)
    for node in nodes:
        openssl("req", *ec, "-subj", f"/CN={node}", "-keyout", f"{node}.key", "-out", f"{node}.csr")
        openssl(
            "x509", "-req", "-in", f"{node}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "825", "-extfile", "node.ext", "-out", f"{node}.pem",
        )  # fmt: skip
    return {
        node: TlsConfig.from_files(directory / "ca.pem", directory / f"{node}.pem", directory / f"{node}.key")
        for node in nodes
    }


def test_mutual_tls_carries_messages_and_plaintext_clients_get_nothing(tmp_path):
    tls = make_certificates(tmp_path, ["node1", "node2"])
    options = TransportOptions(initial_backoff=0.01, max_backoff=0.1)
    assert "PRIVATE" not in repr(tls["node1"])

    async def main():
        async with AsyncExitStack() as stack:
            servers = {i: grpc.aio.server(options=options.server_options()) for i in (1, 2)}
            ports = {
                i: s.add_secure_port("127.0.0.1:0", tls[f"node{i}"].server_credentials()) for i, s in servers.items()
            }
            addresses = {i: f"127.0.0.1:{port}" for i, port in ports.items()}
            recorders = {i: Recorder() for i in (1, 2)}
            transports = {}
            for i in (1, 2):
                transports[i] = GrpcTransport(
                    i, addresses, secret=SECRET, tls=tls[f"node{i}"], options=options, server=servers[i]
                )
                await servers[i].start()
                await transports[i].start(recorders[i])
                stack.push_async_callback(servers[i].stop, 0)
                stack.push_async_callback(transports[i].close)
            transports[1].send([Heartbeat(src=1, dst=2, term=4)])
            transports[2].send([Heartbeat(src=2, dst=1, term=4)])
            await eventually(lambda: recorders[2].received == [Heartbeat(src=1, dst=2, term=4)], what="1 -> 2 over TLS")
            await eventually(lambda: recorders[1].received == [Heartbeat(src=2, dst=1, term=4)], what="2 -> 1 over TLS")
            batch = codec.encode_batch([Heartbeat(src=1, dst=2, term=9)])
            code, _ = await raw_stream(addresses[2], [batch], member_metadata(1, 2))  # right secret, no TLS
            assert code == grpc.StatusCode.UNAVAILABLE
            assert len(recorders[2].received) == 1

    run(main())
