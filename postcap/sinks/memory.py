"""The reference in-memory capture sink: keeps every transaction in a list.

It is the smallest correct :class:`~postcap.interfaces.ICaptureSink` and the
fake that tests wire in place of real sinks (see :mod:`postcap.testing`).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from postcap.interfaces import ICaptureSink
from postcap.model import Transaction


@implementer(ICaptureSink)
class MemorySink:
    """Appends each finished transaction to :attr:`transactions`.

    :attr:`flushes` counts calls to :meth:`flush`; :attr:`closed` turns true on
    :meth:`close`.  Nothing is ever dropped, so keep it to tests and demos.
    """

    name = "memory"

    def __init__(self) -> None:
        self.transactions: list[Transaction] = []
        self.flushes = 0
        self.closed = False

    def transactionCompleted(self, transaction: Transaction) -> None:
        self.transactions.append(transaction)

    def flush(self) -> Deferred[None]:
        self.flushes += 1
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)
