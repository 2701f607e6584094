"""A stand-in for the outside provider, on 127.0.0.1, for tests, the demo and the benchmark.

Its answers are fixed so that every failure path of the shop can be shown: the card
`tok_unavailable` gets a 503, the mail service and the settlements report are down, and the
exchange rates are slow. Run it alone with `python -m examples.shop.stub --port 8970`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UNAVAILABLE_CARD = "tok_unavailable"


class ProviderStub:
    def __init__(
        self,
        *,
        port: int = 0,
        mail_down: bool = True,
        settlements_down: bool = True,
        rates_delay: float = 0.4,
    ) -> None:
        self.mail_down = mail_down
        self.settlements_down = settlements_down
        self.rates_delay = rates_delay
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    data = json.loads(raw)
                except ValueError:
                    return {}
                return data if isinstance(data, dict) else {}

            def do_POST(self) -> None:
                body = self._body()
                stub.requests.append(("POST", self.path))
                if self.path == "/charges":
                    if body.get("card") == UNAVAILABLE_CARD:
                        self._reply(503, {"error": "card network unavailable"})
                    else:
                        self._reply(200, {"id": f"ch_{len(stub.requests)}", "status": "paid"})
                elif self.path == "/mail":
                    if stub.mail_down:
                        self._reply(503, {"error": "mail relay down"})
                    else:
                        self._reply(202, {"queued": True})
                else:
                    self._reply(404, {"error": "not found"})

            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path))
                if self.path.startswith("/rates/"):
                    time.sleep(stub.rates_delay)
                    self._reply(200, {"rate": 1.08})
                elif self.path == "/settlements":
                    if stub.settlements_down:
                        self._reply(503, {"error": "settlement report not ready"})
                    else:
                        self._reply(200, {"settled": 3})
                else:
                    self._reply(404, {"error": "not found"})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> ProviderStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ProviderStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8970)
    parser.add_argument("--mail-up", action="store_true")
    args = parser.parse_args()
    stub = ProviderStub(port=args.port, mail_down=not args.mail_up)
    print(f"provider stub on {stub.url}")
    try:
        stub._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub._server.server_close()


if __name__ == "__main__":
    main()
