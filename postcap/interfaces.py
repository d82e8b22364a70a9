"""The seams of postcap, as zope interfaces.

Every implementation is checked with :func:`zope.interface.verify.verifyObject`
when it is registered, and a conformance mixin in the tests runs against each.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ICaptureSink(Interface):
    """Receives every finished transaction of the active capture session.

    A sink must never slow traffic down: ``transactionCompleted`` returns at once
    (a Deferred for work it finishes later).  A failure in one sink is logged and
    never reaches the proxy or the other sinks.
    """

    name = Attribute("A short name for logs, e.g. 'history'.")

    def transactionCompleted(transaction):
        """Take a finished :class:`postcap.model.Transaction`.

        @return: None, or a Deferred that fires when the sink is done with the
            transaction (its spooled bodies may be deleted after that).
        """

    def flush():
        """@return: a Deferred that fires when everything taken so far is durable."""

    def close():
        """Flush and release resources.  @return: a Deferred."""


class IHistoryStore(ICaptureSink):
    """Durable history of sessions and their transactions.

    Reads see every transaction already handed to ``transactionCompleted``
    (implementations flush pending writes before reading).
    """

    stats = Attribute(
        "A postcap.metrics.StorageStats the store keeps current: transactions pending, "
        "written and dropped, batch write latency, and whether it accepts writes.")

    def open():
        """Create or migrate the store.  @return: a Deferred."""

    def recover_interrupted():
        """Mark sessions left running or paused by a crash as stopped, ending at
        their last captured transaction (or their start).

        @return: a Deferred firing with the list of recovered session ids.
        """

    def save_session(record):
        """Insert or replace a :class:`postcap.model.SessionRecord`.  @return: Deferred."""

    def get_session(session_id):
        """@return: a Deferred firing with a SessionRecord, or None."""

    def list_sessions(limit, offset):
        """@return: a Deferred firing with ``(total, [SessionRecord])``, newest first."""

    def delete_session(session_id):
        """Delete a session and everything it captured.

        @return: a Deferred firing with True, or False when there was no such session.
        """

    def clear_session(session_id):
        """Delete a session's transactions and reset its counters.  @return: Deferred."""

    def list_transactions(session_id, limit, offset):
        """@return: a Deferred firing with ``(total, [summary dict])`` in capture order."""

    def get_transaction(transaction_id):
        """@return: a Deferred firing with the detail dict, or None."""

    congested = Attribute(
        "True while more captured data waits to be written than the store will hold "
        "in memory: the proxy stops reading captured clients until :meth:`when_drained`."
    )

    def when_drained():
        """@return: a Deferred that fires once the store is no longer congested."""


class IWebSocketHistory(Interface):
    """A history store that also keeps the messages of WebSocket transactions.

    Messages and closes are queued and written after the transactions handed over
    before them (a message whose transaction is not stored is dropped).  The detail
    of a transaction of kind ``websocket`` gains ``websocket: {messages,
    message_count, closed_by, close_code}``.
    """

    def append_message(message):
        """Queue a :class:`postcap.model.WebSocketMessage`.  @return: None."""

    def websocket_closed(transaction_id, closed_by, close_code):
        """Queue the end of a WebSocket connection.  @return: None."""

    def list_messages(transaction_id, limit, offset):
        """@return: a Deferred firing with ``(total, [message dict])`` oldest first,
        or None when the transaction is unknown."""
