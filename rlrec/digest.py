"""A running digest of an episode's observations: equal digests, the same episode."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


class ObsDigest:
    """A running BLAKE2b digest of an episode's observations (the reset one, then one a step).

    >>> a, b = ObsDigest(), ObsDigest()
    >>> for d in (a, b):
    ...     d.update(np.zeros(4, np.float32))
    >>> a.hexdigest() == b.hexdigest(), len(a.hexdigest())
    (True, 32)
    """

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def update(self, obs: Any) -> None:
        """Take one observation in; arrays are hashed from their memory, without a copy."""
        try:
            self._hash.update(obs)
        except (TypeError, BufferError, ValueError):  # not a contiguous buffer: hash its bytes
            self._hash.update(_canonical_bytes(obs))

    def hexdigest(self) -> str:
        """The digest so far, as 32 hex digits."""
        return self._hash.hexdigest()


def _canonical_bytes(obs: Any) -> bytes:
    if isinstance(obs, np.ndarray):
        return np.ascontiguousarray(obs).tobytes()
    if isinstance(obs, dict):
        return b"".join(repr(k).encode() + _canonical_bytes(obs[k]) for k in sorted(obs))
    if isinstance(obs, (tuple, list)):
        return b"".join(_canonical_bytes(o) for o in obs)
    return repr(obs).encode()
