"""A batch stream started ahead of its first use."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional


class StartedStream:
    """Starts a batch stream in a background thread and takes its first batch.

    Started while other work goes on (the previous epoch's validation, the previous window of
    a planned feed), so that the new stream's start-up (planning, launching read tasks, the
    first blocks) overlaps it instead of stalling the first step. ``next()`` then returns
    that first batch and continues with the stream."""

    def __init__(self, make_iter: Callable[[], Iterator]):
        self._it: Optional[Iterator] = None
        self._first: Any = None
        self._error: Optional[BaseException] = None
        self._done = False
        self._thread = threading.Thread(target=self._start, args=(make_iter,), daemon=True,
                                        name="ray-ingest-stream-start")
        self._thread.start()

    def _start(self, make_iter) -> None:
        try:
            self._it = iter(make_iter())
            self._first = next(self._it)
        except StopIteration:
            self._done = True
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._error = e

    def __iter__(self):
        return self

    def __next__(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopIteration
            first, self._first = self._first, None
            return first
        if self._done or self._it is None:
            raise StopIteration
        return next(self._it)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        close = getattr(self._it, "close", None)
        if close:
            close()
