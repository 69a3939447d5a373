"""The README's run command: a local 5-node chat cluster and a scripted conversation on it that survives a leader kill.

Starts (or restarts, keeping its data) a cluster under ``--dir`` with fsync on, signs two users in on different
nodes, chats through the Qt-free client library while printing what each side sees, SIGKILLs the leader in the
middle of the conversation, shows that the next message is still delivered exactly once and that the killed node
catches up after its restart, then leaves the cluster running for the desktop client until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from chat_client_qt.client import AlreadyExists, ChatClient, api
from chat_server.cluster import LocalCluster

PASSWORD = "demo-password-123"
USERS = {"alice": "Alice", "bob": "Bob"}


def say(text: str) -> None:
    """Print one line of the demo's narration, with the time."""
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


async def sign_in(client: ChatClient, username: str) -> None:
    """Register ``username`` (unless it exists from an earlier run) and log in."""
    with contextlib.suppress(AlreadyExists):
        await client.register(username, PASSWORD, USERS[username])
    await client.login(username, PASSWORD)


async def watch(client: ChatClient, who: str, seen: list[api.Event], names: dict[str, str]) -> None:
    """Print every event ``who`` receives live (the stream resumes by itself after a node dies)."""
    async with client.subscribe() as stream:
        async for item in stream:
            if isinstance(item, api.Event) and item.body:
                seen.append(item)
                room = names.get(item.conversation_id, item.conversation_id)
                say(f"    {who} received  [{room} #{item.seq}] {item.sender}: {item.body}")


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


async def conversation(cluster: LocalCluster) -> None:
    """The scripted chat, printed as it happens."""
    endpoints = cluster.client_endpoints()
    # Alice talks to node 1 first, Bob to node 3: each client knows every node and fails over by itself.
    alice = ChatClient([endpoints[0], *endpoints[1:]], use_outbox=False)
    bob = ChatClient([endpoints[2], *endpoints[:2], *endpoints[3:]], use_outbox=False)
    async with alice, bob:
        await sign_in(alice, "alice")
        await sign_in(bob, "bob")
        say("alice and bob are signed in (alice via node 1, bob via node 3)")
        room = await alice.create_room(f"demo-{uuid.uuid4().hex[:6]}", topic="the README demo", members=["bob"])
        names = {room.id: room.name}
        say(f"alice created room {room.name!r} with bob")
        seen: list[api.Event] = []
        watcher = asyncio.create_task(watch(bob, "bob", seen, names))
        await asyncio.sleep(0.5)  # let bob's stream open before the first message (it would catch up anyway)

        lines = ["hi bob, this message is on a majority of disks before you see it", "let's break something"]
        for line in lines:
            sent = await alice.send(room.id, line)
            say(f"alice sent [{room.name} #{sent.message.seq}] {line!r}")
        await wait_for(lambda: len(seen) >= len(lines), 10, "bob to receive alice's messages")
        reply = await bob.send(room.id, "go ahead, kill the leader")
        say(f"bob sent   [{room.name} #{reply.message.seq}] {reply.message.body!r}")

        leader = await asyncio.to_thread(cluster.leader_id, 10)
        say(f"killing the leader, node {leader}, with SIGKILL")
        await asyncio.to_thread(cluster.kill, leader)
        start = time.monotonic()
        line = "still here? this was sent right after the leader died"
        sent = await alice.send(room.id, line)
        say(f"alice sent [{room.name} #{sent.message.seq}] {line!r} (acknowledged {time.monotonic() - start:.2f}s")
        say("           after the kill, by the new leader)")
        await wait_for(lambda: any(e.seq == sent.message.seq for e in seen), 15, "bob to receive it")
        new_leader = await asyncio.to_thread(cluster.leader_id, 10)
        say(f"node {new_leader} leads now; bob's stream resumed without a gap or a duplicate")

        say(f"restarting node {leader}")
        await asyncio.to_thread(cluster.start_node, leader)
        await asyncio.to_thread(cluster.wait_ready, 30, [leader])
        status = await alice.cluster_status()
        say("cluster status:")
        for node in status.nodes:
            state = node.role if node.reachable else f"unreachable ({node.error})"
            say(f"    node {node.node_id}: {state:<9} term {node.term} applied {node.applied_index}")
        history = await bob.history(room.id)
        bodies = [e.body for e in history.events if e.body]
        assert len(bodies) == len(set(bodies)), "a message appears twice"
        say(f"history of {room.name!r} as bob reads it: {len(bodies)} messages, each exactly once")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def main() -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("chat-cluster"), help="cluster directory (kept)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--base-client-port", type=int, default=50051)
    parser.add_argument("--base-peer-port", type=int, default=7001)
    parser.add_argument("--exit", action="store_true", help="stop the cluster after the script")
    args = parser.parse_args()

    cluster = LocalCluster(
        args.dir, nodes=args.nodes, base_client_port=args.base_client_port, base_peer_port=args.base_peer_port
    )
    say(f"starting a {args.nodes}-node chat cluster under {cluster.directory} (fsync on)")
    cluster.start()
    try:
        cluster.wait_ready(60)
        say(f"node {cluster.leader_id(30)} leads; client endpoints: {','.join(cluster.client_endpoints())}")
        asyncio.run(conversation(cluster))
        if args.exit:
            return 0
        say("the cluster keeps running; chat on it with the desktop client:")
        say(f"    chat-client-qt --servers {','.join(cluster.client_endpoints())}")
        say("press Ctrl-C to stop the cluster")
        signal.signal(signal.SIGTERM, _interrupt)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping the cluster")
        cluster.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
