"""A running digest of an episode's observations: equal digests, the same episode."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import xxhash

#: Arrays of this many bytes and more (an image) enter the digest as their 64-bit XXH64 hash:
#: an Atari frame (100 KB) costs 3 us there against 100 us in BLAKE2b, a third of what stepping
#: and rendering it costs. (XXH3 is faster alone, 2 us, but its AVX2 code costs 20 us a step
#: between an emulator's steps, while the core powers its vector units up again.) Smaller
#: observations (a joint vector) are hashed as they are: their digests are those of before.
LARGE = 4096
#: What hashing an observation that is not a contiguous buffer raises.
UNLIKE = (TypeError, BufferError, ValueError)


class ObsDigest:
    """A running BLAKE2b digest of an episode's observations (the reset one, then one a step;
    a large array as its XXH64 hash).

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
            if isinstance(obs, np.ndarray) and obs.nbytes >= LARGE:
                self._hash.update(xxhash.xxh64_digest(obs))
            else:
                self._hash.update(obs)
        except UNLIKE:  # not a contiguous buffer: hash its bytes
            self._hash.update(_canonical_bytes(obs))

    def updater(self, like: Any) -> Callable[[Any], None]:
        """The cheapest way to take in observations like ``like`` (an episode's reset one): for
        a small contiguous array, the hash's own ``update``, with no Python call per step (the
        same digest: ``update`` hashes such an array as it is); else ``update``. The fast one
        raises ``UNLIKE`` on an observation it cannot take: pass that one to ``update``."""
        if isinstance(like, np.ndarray) and like.nbytes < LARGE and like.flags.c_contiguous:
            return self._hash.update
        return self.update

    def hexdigest(self) -> str:
        """The digest so far, as 32 hex digits."""
        return self._hash.hexdigest()


def _canonical_bytes(obs: Any) -> bytes:
    if isinstance(obs, np.ndarray):
        data = np.ascontiguousarray(obs)
        return xxhash.xxh64_digest(data) if data.nbytes >= LARGE else data.tobytes()
    if isinstance(obs, dict):
        return b"".join(repr(k).encode() + _canonical_bytes(obs[k]) for k in sorted(obs))
    if isinstance(obs, (tuple, list)):
        return b"".join(_canonical_bytes(o) for o in obs)
    return repr(obs).encode()
