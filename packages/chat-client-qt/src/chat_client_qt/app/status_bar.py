"""``ClusterStatusBar``: the connected node, the leader and term, how many nodes are up, and "Reconnecting…"."""

from __future__ import annotations

from PyQt6.QtWidgets import QLabel, QStatusBar, QWidget

from chat_client_qt._gen.api.chat import v1 as api


class ClusterStatusBar(QStatusBar):
    """The main window's status bar (texts readable by tests via the ``*_text`` methods)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.connection = QLabel("Connecting…")
        self.connection.setAccessibleName("Connection")
        self.leader = QLabel("Leader: unknown")
        self.nodes = QLabel("Nodes up: ?")
        self.outbox = QLabel("")
        self.addWidget(self.connection, 1)
        self.addPermanentWidget(self.outbox)
        self.addPermanentWidget(self.leader)
        self.addPermanentWidget(self.nodes)
        self.reconnects = 0
        self._leader_term: tuple[int, int] = (0, 0)
        self._was_connected = False

    # -- updates ---------------------------------------------------------------------------------------------

    def set_connected(self, endpoint: str) -> None:
        """The live stream is open on ``endpoint``."""
        if not self._was_connected and self.reconnects:
            self.showMessage("Reconnected", 4000)
        self._was_connected = True
        self.connection.setText(f"● Connected to {endpoint}")
        self.connection.setToolTip("Live updates come from this server")

    def set_reconnecting(self, reason: str) -> None:
        """The live stream is down; the app shows what it has and retries."""
        if self._was_connected:
            self.reconnects += 1
        self._was_connected = False
        self.connection.setText("⟳ Reconnecting… (showing cached messages; new ones are kept until sent)")
        self.connection.setToolTip(reason)

    def set_heartbeat(self, heartbeat: api.Heartbeat) -> None:
        """The serving node's view of the leader and term (sent with every heartbeat)."""
        self._show_leader(heartbeat.leader_id, heartbeat.term, "")

    def set_cluster(self, status: api.ClusterStatus | None) -> None:
        """The cluster's status (None: no node answered)."""
        if status is None:
            self.nodes.setText("Nodes up: none reachable")
            self.nodes.setToolTip("")
            return
        total = len(status.nodes)
        self.nodes.setText(f"Nodes up: {status.nodes_up}/{total}")
        self.nodes.setToolTip(
            "\n".join(
                f"node {n.node_id}: {n.role if n.reachable else 'down'} ({n.client_address})" for n in status.nodes
            )
        )
        term = max((n.term for n in status.nodes if n.reachable), default=0)
        address = next((n.client_address for n in status.nodes if n.node_id == status.leader_id), "")
        self._show_leader(status.leader_id, term, address)

    def set_pending(self, count: int) -> None:
        """How many of the user's messages wait to be sent."""
        self.outbox.setText(f"{count} message{'s' if count != 1 else ''} waiting to send" if count else "")

    def _show_leader(self, leader_id: int, term: int, address: str) -> None:
        if term < self._leader_term[1]:
            return  # an older view
        self._leader_term = (leader_id, term)
        if leader_id:
            self.leader.setText(f"Leader: node {leader_id} · term {term}")
            if address:
                self.leader.setToolTip(f"The leader serves clients at {address}")
        else:
            self.leader.setText(f"Leader: electing… · term {term}")

    # -- reading ---------------------------------------------------------------------------------------------

    def connection_text(self) -> str:
        """The connection label's text."""
        return self.connection.text()

    def leader_text(self) -> str:
        """The leader label's text."""
        return self.leader.text()

    def nodes_text(self) -> str:
        """The nodes-up label's text."""
        return self.nodes.text()
