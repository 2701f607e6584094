"""HTTP/1.1 messages read off a plain socket, for tests that must see the bytes themselves (a
server's early answer, a client's kept-alive requests) where an HTTP library would hide them."""

from __future__ import annotations

import socket

#: How much one read asks for.
READ_SIZE = 65536


def read_message(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes, bytes] | None:
    """The next message, framed by its Content-Length: (head without the blank line, body, what
    came after it). `buffer` is what an earlier call returned last: on a kept-alive connection it
    may hold the start of this message. None when the peer closes before the message is whole."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            return None
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            return None
        buffer += chunk
    return head, buffer[:length], buffer[length:]
