"""The network module's one exception: how a fetch ended without an image, as one of fetch's statuses."""

from __future__ import annotations


class FetchError(Exception):
    """A fetch that ended without an image: ``status`` is one of fetch's closed list of reasons."""

    def __init__(self, status: str, message: str, http_status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status
        #: Whether trying again may succeed (timeouts, connection errors): the client retries only these.
        self.transient = transient
