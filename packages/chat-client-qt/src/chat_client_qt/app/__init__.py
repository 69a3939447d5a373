"""The PyQt6 desktop app of the chat service (``chat-client-qt``): windows, dialogs, models and the session.

Every Qt import of the distribution lives in this package; the network side is ``chat_client_qt.client``,
driven on the Qt event loop through qasync (no call blocks the GUI thread).

Modules, one concern each:

- ``main``: the console script (``--servers``), the QApplication and the qasync loop.
- ``application``: ``ChatApp``, which moves between the sign-in window and the main window.
- ``session``: ``ChatSession``, the signed-in client as Qt signals (live events, connection, cluster status).
- ``settings``: remembered settings (QSettings) and the ``--servers`` parser.
- ``tasks``: ``TaskSet``, the asyncio tasks a widget starts and must cancel.
- ``formatting``: texts shown to people (times, previews, system lines, error messages); no Qt.
- ``timeline``: one conversation's rows (messages, day separators, pending sends); no Qt.
- ``typing_state``: who is typing where; no Qt.
- ``conversation_model`` / ``message_model``: the Qt item models over the above.
- ``conversation_delegate`` / ``message_delegate``: how their rows are painted.
- ``conversation_list``, ``message_view``, ``compose``, ``conversation_pane``, ``status_bar``: the widgets.
- ``sign_in``, ``main_window``: the two windows.
- ``dialog_base``, ``user_picker``, ``direct_dialog``, ``room_dialog``, ``invite_dialog``, ``search_dialog``,
  ``servers_dialog``: the dialogs, their common base and their shared user search.
- ``theme``: colours derived from the system palette (light or dark).
"""
