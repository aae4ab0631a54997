"""The moto emulator, serving one request at a time.

DynamoDB's TransactWriteItems is serializable: concurrent transactions never see or undo each
other's half-written items (AWS DynamoDB developer guide, "Isolation levels for DynamoDB
transactions"). moto 5.2's is not: it deep-copies the tables, applies the items and restores
that copy when a condition fails, with no lock, so two concurrent transactions can each restore
a snapshot holding the other's partial writes. Concurrency tests (I1 under 50 parallel
creates, pool counts) then fail or pass by chance.

Holding one lock around the whole application (the response body included) makes every
request atomic, as on AWS, while the threaded server still accepts connections concurrently.
Usage: moto-serial.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import signal
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class Serialized:
    """WSGI middleware: one request inside the application at a time."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                # The body is produced inside the lock too: moto may build it lazily.
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # Exit at once: the emulator's state is throwaway, and tearing down the tables of a
    # whole test run through the interpreter's shutdown takes seconds.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        Serialized(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
