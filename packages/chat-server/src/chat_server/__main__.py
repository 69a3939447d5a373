"""``python -m chat_server ...``: the ``chat-server`` command line (see ``chat_server.cli``)."""

import sys

from chat_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
