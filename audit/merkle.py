"""Merkle tree hashing, proofs and proof verification exactly as RFC 9162 section 2 defines them.

Written here rather than taken from a library: the Python CT libraries are unmaintained or tied to
certificate parsing, and the algorithms are short enough to check exhaustively against the RFC's
recursive definitions (tests/audit/test_merkle.py does so for every tree size up to 64 and every
index, and against forged roots and rewritten histories).

Leaves are hashed as ``SHA-256(0x00 || entry)`` and interior nodes as ``SHA-256(0x01 || l || r)``;
a tree of n > 1 leaves splits at k, the largest power of two smaller than n.

Every node of that tree covers a range ``[lo, hi)`` whose hash is the right fold of the *perfect*
subtrees the range decomposes into (one per bit of ``hi - lo``, largest first). Proofs are
therefore described here as lists of ranges (:func:`inclusion_ranges`, :func:`consistency_ranges`)
and computed from perfect-subtree hashes wherever those come from: a list of leaves in memory, or
the stored subtree hashes of a large log (``audit.proofs``), so that a proof on a log of millions
of events reads O(log n) hashes instead of every leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

Subtree = tuple[int, int]  # (level, index): the perfect subtree of leaves [index·2^level, +2^level)


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves, computed bottom-up in O(n) without recursion."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    level = list(leaves)
    # Pairwise reduction matches the recursive definition because the split point k is always a
    # power of two: an odd last node is carried up unchanged, exactly as in the RFC's tree shape.
    while len(level) > 1:
        nxt = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --- the shape of the tree ------------------------------------------------------------------


def perfect_subtrees(lo: int, hi: int) -> list[Subtree]:
    """The perfect subtrees, largest first, whose right fold is the hash of node ``[lo, hi)``.

    ``[lo, hi)`` must be a node of the RFC tree (as every range produced here is): ``lo`` is then
    aligned to the largest power of two not exceeding ``hi - lo``, and so is each later piece.
    """
    out: list[Subtree] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        size = 1 << level
        if lo & (size - 1):
            raise ValueError("not a node of the Merkle tree")
        out.append((level, lo >> level))
        lo += size
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a node's perfect subtrees (largest first) into the node's hash."""
    if not hashes:
        return EMPTY_ROOT
    r = hashes[-1]
    for h in reversed(hashes[:-1]):
        r = _sha256(b"\x01" + h + r).digest()
    return r


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The nodes ``[lo, hi)`` whose hashes make up PATH(index, D[size]), in proof order."""
    if not 0 <= index < size:
        raise ValueError("leaf index out of range")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The nodes ``[lo, hi)`` whose hashes make up PROOF(old_size, D[new_size]), in proof order."""
    if not 0 < old_size <= new_size:
        raise ValueError("old tree size out of range")
    ranges: list[tuple[int, int]] = []
    m, lo, hi, complete = old_size, 0, new_size, True
    while True:
        if m == hi - lo:  # SUBPROOF(m, D[m], b) = {} if b, else {MTH(D[m])}
            if not complete:
                ranges.append((lo, hi))
            break
        k = split(hi - lo)
        if m <= k:  # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def subtrees_of(ranges: Sequence[tuple[int, int]]) -> set[Subtree]:
    """Every perfect subtree needed to hash the given nodes."""
    return {s for lo, hi in ranges for s in perfect_subtrees(lo, hi)}


def hash_ranges(
    ranges: Sequence[tuple[int, int]], subtree: Callable[[int, int], bytes]
) -> list[bytes]:
    """Hash each node ``[lo, hi)`` from its perfect subtrees, looked up with ``subtree(level, i)``."""
    return [fold([subtree(lv, i) for lv, i in perfect_subtrees(lo, hi)]) for lo, hi in ranges]


# --- proofs over leaves held in memory --------------------------------------------------------


def _leaf_subtrees(leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    def subtree(level: int, index: int) -> bytes:
        return root(leaves[index << level : (index + 1) << level])

    return subtree


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, for hashed leaves."""
    return hash_ranges(inclusion_ranges(index, len(leaves)), _leaf_subtrees(leaves))


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1, for hashed leaves."""
    return hash_ranges(consistency_ranges(old_size, len(leaves)), _leaf_subtrees(leaves))


# --- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -------------------------------------


def _hashes_ok(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: verify that ``leaf`` is at ``index`` in the tree of ``root``."""
    if not 0 <= index < size or not _hashes_ok(leaf, expected_root, *proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: verify that the tree of ``new_root`` extends that of ``old_root``.

    Equal sizes are consistent exactly when the proof is empty and the roots are equal (PROOF of
    m = n is empty by the RFC's definition). Size 0 is refused: an empty tree proves nothing.
    """
    if not 0 < old_size <= new_size or not _hashes_ok(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# --- the growing log ----------------------------------------------------------------------------


class Frontier:
    """The roots of the perfect subtrees of a growing log (a compact range from 0 to size).

    Appending is O(log n) and the current root is O(log n), so the service knows its tree head
    after every event without rereading the log.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != bin(size).count("1") or not _hashes_ok(*hashes):
            raise ValueError("frontier does not match the tree size")
        self.size = size
        self.hashes = list(hashes)  # largest subtree first

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; return the perfect subtrees it completed as ``(level, index, hash)``.

        The leaf itself is level 0; merging two equal-sized subtrees completes one of the next
        level, exactly like a binary carry.
        """
        n = self.size
        completed = [(0, n, leaf)]
        h = leaf
        level = 0
        while n & 1:
            h = node_hash(self.hashes.pop(), h)
            n >>= 1
            level += 1
            completed.append((level, n, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        if len(data) % HASH_SIZE:
            raise ValueError("frontier does not match the tree size")
        hashes = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return cls(size, hashes)
