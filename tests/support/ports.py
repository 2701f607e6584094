"""A free 127.0.0.1 port for a server a test starts by port number.

The demo needs the same thing, so the one implementation lives in src and is shared from here.
"""

from __future__ import annotations

from fastapi_sentry._cli.demo import _free_port as free_port

__all__ = ["free_port"]
