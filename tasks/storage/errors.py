"""What the store raises, apart from the built-in FileNotFoundError / FileExistsError it uses for a
missing or an already existing key."""

from __future__ import annotations


class StoreError(RuntimeError):
    """An artifact cannot be read as committed (not committed, or a file does not match its sha256), or
    the backend refused a request (the message says why, never a credential)."""


class StoreUnavailable(StoreError):
    """The store did not answer a request (timeouts, refused connections, 5xx answers) however often it was
    retried: nothing is wrong with the request, so a later try of the step can succeed."""


class NoSpace(StoreError):
    """The store's filesystem has not enough free space for a write (checked before it, and on ENOSPC):
    the message names the path, the bytes to write and the bytes free; nothing partial is left."""


class MissingBucket(StoreError):
    """The bucket a URI names does not exist."""


class UnsupportedScheme(NotImplementedError, ValueError):
    """A URI whose scheme no backend serves. A ValueError too, as `local_path` raised for it before."""
