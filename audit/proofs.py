"""Merkle roots and proofs over the stored log, in O(log n) reads.

A proof is a list of tree nodes (``audit.merkle.inclusion_ranges`` / ``consistency_ranges``), each
the fold of a few perfect subtrees. Perfect subtrees of 2**STORED_LEVEL leaves or more are read
from ``audit_nodes`` (written as the log grows); smaller ones are recomputed from the leaf hashes
of at most a few 2**STORED_LEVEL-leaf blocks. On a log of a million events a proof reads about
twenty stored hashes and a few hundred leaf hashes, whatever the index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from audit import merkle
from audit.errors import AuditIntegrityError
from audit.models import STORED_LEVEL, AuditEvent, AuditHead, AuditNode
from core.errors import InvalidInput


def head_size(session: Session) -> int:
    """The number of events in the log (committed or in this transaction)."""
    return int(session.execute(select(AuditHead.size).where(AuditHead.id == 1)).scalar_one())


class StoredTree:
    """The Merkle tree of the stored log, for any size up to the current one."""

    def __init__(self, session: Session, size: int | None = None) -> None:
        self.session = session
        self.size = head_size(session) if size is None else size

    def _check_size(self, size: int) -> None:
        if not 0 < size <= self.size:
            raise InvalidInput(f"The tree size must be between 1 and {self.size}.")

    def leaf_hashes(self, lo: int, hi: int) -> list[bytes]:
        """The leaf hashes of events ``[lo, hi)``, which must all exist."""
        rows = self.session.execute(
            select(AuditEvent.idx, AuditEvent.leaf_hash)
            .where(AuditEvent.idx >= lo, AuditEvent.idx < hi)
            .order_by(AuditEvent.idx)
        ).all()
        for expected, (idx, _) in enumerate(rows, start=lo):
            if idx != expected:
                raise AuditIntegrityError(f"The stored log is missing event {expected}.")
        if len(rows) != hi - lo:
            raise AuditIntegrityError(f"The stored log is missing event {lo + len(rows)}.")
        return [bytes(h) for _, h in rows]

    def subtrees(self, needed: Iterable[merkle.Subtree]) -> dict[merkle.Subtree, bytes]:
        """The hashes of the given perfect subtrees, all of which lie within the tree."""
        wanted = set(needed)
        for level, index in wanted:
            if (index + 1) << level > self.size:
                raise ValueError("a perfect subtree beyond the tree size")
        out: dict[merkle.Subtree, bytes] = {}
        stored = sorted(s for s in wanted if s[0] >= STORED_LEVEL)
        if stored:
            rows = self.session.execute(
                select(AuditNode.level, AuditNode.idx, AuditNode.hash).where(
                    tuple_(AuditNode.level, AuditNode.idx).in_(stored)
                )
            ).all()
            out.update({(lv, i): bytes(h) for lv, i, h in rows})
        # Small subtrees, and any stored one that is missing, come from the leaves; group them by
        # block so that each block of leaves is read once.
        by_block: dict[int, list[merkle.Subtree]] = defaultdict(list)
        for level, index in wanted - out.keys():
            by_block[(index << level) >> STORED_LEVEL].append((level, index))
        for block, subtrees in sorted(by_block.items()):
            lo = block << STORED_LEVEL
            hi = max((i + 1) << lv for lv, i in subtrees)
            leaves = self.leaf_hashes(lo, hi)
            for lv, i in subtrees:
                start = (i << lv) - lo
                out[(lv, i)] = merkle.root(leaves[start : start + (1 << lv)])
        return out

    def _hash(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        hashes = self.subtrees(merkle.subtrees_of(ranges))
        return merkle.hash_ranges(ranges, lambda level, index: hashes[(level, index)])

    def root(self, size: int) -> bytes:
        """MTH(D[size])."""
        self._check_size(size)
        return self._hash([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size])."""
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidInput(f"The index must be between 0 and {size - 1}.")
        return self._hash(merkle.inclusion_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[new_size])."""
        self._check_size(new_size)
        if not 0 < old_size <= new_size:
            raise InvalidInput(f"The first tree size must be between 1 and {new_size}.")
        return self._hash(merkle.consistency_ranges(old_size, new_size))
