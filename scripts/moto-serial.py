"""The moto emulator, serving one request at a time.

DynamoDB's TransactWriteItems is serializable: concurrent transactions never see or undo each
other's half-written items (AWS DynamoDB developer guide, "Isolation levels for DynamoDB
transactions"). moto 5.2's is not: it deep-copies the tables, applies the items and restores
that copy when a condition fails, with no lock, so two concurrent transactions can each restore
a snapshot holding the other's partial writes. Concurrency tests (I1 under 50 parallel
creates, pool counts) then fail or pass by chance.

Holding one lock around the whole application (the response body included) makes every
request atomic, as on AWS, while the threaded server still accepts connections concurrently.
DynamoDB Streams: an UpdateItem that creates its item writes one INSERT record whose NewImage
is the whole new item (AWS DynamoDB developer guide, "Change data capture for DynamoDB
Streams": a stream record holds the item "as it appeared after it was modified"). moto 5.2
first puts a keys-only item, which it records as an INSERT of its own, then records the update
as a second INSERT. `one_insert_per_update` drops that first, keys-only record.

A cancelled transaction leaves no stream record (nothing changed). moto 5.2 rolls back by
swapping in a deep copy of the table, stream shard included, while open shard iterators keep
pointing at the old shard: a reader would see the cancelled writes and then nothing more.
`rollback_keeps_the_stream` keeps the live shard (never copied), cut back to where it was.

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


_creating = threading.local()


def one_insert_per_update() -> None:
    """Patches moto so an UpdateItem that creates its item streams one record, as AWS does."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard

    update_item = DynamoDBBackend.update_item
    add = StreamShard.add

    def patched_update_item(self, table_name, key, *args, **kwargs):
        _creating.table = self.get_table(table_name)
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        finally:
            _creating.table = None

    def patched_add(self, old, new):
        keys = {self.table.hash_key_attr, self.table.range_key_attr} - {None}
        if (
            getattr(_creating, "table", None) is self.table
            and old is None
            and new is not None
            and set(new.attrs) <= keys
        ):
            # The keys-only item moto puts before applying the update: not a change of its own.
            return None
        return add(self, old, new)

    DynamoDBBackend.update_item = patched_update_item
    StreamShard.add = patched_add


def rollback_keeps_the_stream() -> None:
    """Patches moto so a cancelled transaction's writes leave the stream as it was."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard

    # The rollback copy shares the live shard instead of copying it (the stream only grows,
    # and copying it at every transaction would make each slower than the last).
    StreamShard.__deepcopy__ = lambda self, memo: self
    transact_write_items = DynamoDBBackend.transact_write_items

    def patched(self, transact_items):
        shards = {
            name: (table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        try:
            return transact_write_items(self, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                del shard.items[length:]
                table = self.tables.get(name)
                if table is not None:
                    shard.table = table
                    table.stream_shard = shard
            raise

    DynamoDBBackend.transact_write_items = patched


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

    one_insert_per_update()
    rollback_keeps_the_stream()
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
