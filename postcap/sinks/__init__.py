"""Capture sinks: where finished transactions go (history, collections, cookies, events)."""

__all__: list[str] = []
