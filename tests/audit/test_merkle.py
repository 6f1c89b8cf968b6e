"""The Merkle code against RFC 9162's recursive definitions, exhaustively for n <= 64.

No database: these run once per backend in well under a few seconds.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from audit import merkle
from tests.audit import rfc9162

MAX = 64
ENTRIES = [f"entry {i}".encode() for i in range(MAX)]
LEAVES = [merkle.leaf_hash(e) for e in ENTRIES]
ALL_SIZES = range(1, MAX + 1)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def _rewritten(position: int, n: int) -> list[bytes]:
    """The first n entries with the one at ``position`` rewritten."""
    d = list(ENTRIES[:n])
    d[position] = d[position] + b" (rewritten)"
    return d


def test_leaf_and_node_hashes_use_the_rfc_prefixes():
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        merkle.node_hash(b"L" * 32, b"R" * 32)
        == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    # A leaf can never be confused with an interior node: the prefixes differ.
    assert merkle.leaf_hash(b"L" * 32 + b"R" * 32) != merkle.node_hash(b"L" * 32, b"R" * 32)


def test_split_is_the_largest_power_of_two_smaller_than_n():
    for n in range(2, 1100):
        k = merkle.split(n)
        assert k < n <= 2 * k and k & (k - 1) == 0


@pytest.mark.parametrize("n", range(MAX + 1))
def test_root_matches_mth(n):
    assert merkle.root(LEAVES[:n]) == rfc9162.mth(ENTRIES[:n])


def test_root_matches_mth_on_larger_irregular_trees():
    entries = [os.urandom(8) for _ in range(1000)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    for n in (127, 128, 129, 255, 257, 511, 513, 777, 1000):
        assert merkle.root(leaves[:n]) == rfc9162.mth(entries[:n])


@pytest.mark.parametrize("n", ALL_SIZES)
def test_inclusion_proof_is_path_for_every_index(n):
    for m in range(n):
        assert merkle.inclusion_proof(LEAVES[:n], m) == rfc9162.path(m, ENTRIES[:n]), (m, n)


@pytest.mark.parametrize("n", ALL_SIZES)
def test_consistency_proof_is_proof_for_every_old_size(n):
    for m in range(1, n + 1):
        assert merkle.consistency_proof(LEAVES[:n], m) == rfc9162.proof(m, ENTRIES[:n]), (m, n)


@pytest.mark.parametrize("n", ALL_SIZES)
def test_every_inclusion_proof_verifies_and_every_alteration_fails(n):
    root = rfc9162.mth(ENTRIES[:n])
    for m in range(n):
        proof = rfc9162.path(m, ENTRIES[:n])
        leaf = LEAVES[m]
        assert merkle.verify_inclusion(m, n, leaf, proof, root)
        # Every other index, and every other tree size, fails.
        for other in range(n):
            if other != m:
                assert not merkle.verify_inclusion(other, n, leaf, proof, root), (m, other, n)
        # The signed checkpoint binds the size to the root; a proof checked at a size whose path
        # has another length never verifies.
        for size in range(m + 1, MAX + 1):
            if len(merkle.inclusion_ranges(m, size)) != len(proof):
                assert not merkle.verify_inclusion(m, size, leaf, proof, root), (m, n, size)
        # Any changed, dropped or added proof element fails.
        for i in range(len(proof)):
            changed = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
            assert not merkle.verify_inclusion(m, n, leaf, changed, root)
        if proof:
            assert not merkle.verify_inclusion(m, n, leaf, proof[:-1], root)
        assert not merkle.verify_inclusion(m, n, leaf, [*proof, LEAVES[0]], root)
        # Another leaf, a forged root, a bad index and malformed hashes fail.
        assert not merkle.verify_inclusion(m, n, LEAVES[(m + 1) % MAX], proof, root)
        assert not merkle.verify_inclusion(m, n, leaf, proof, _flip(root))
        assert not merkle.verify_inclusion(m, n, leaf, proof, os.urandom(32))
        assert not merkle.verify_inclusion(-1, n, leaf, proof, root)
        assert not merkle.verify_inclusion(m, n, leaf[:31], proof, root)
        if proof:
            assert not merkle.verify_inclusion(m, n, leaf, [p + b"\x00" for p in proof], root)


@pytest.mark.parametrize("n", ALL_SIZES)
def test_inclusion_in_a_rewritten_history_never_verifies_against_the_signed_root(n):
    """An operator who rewrote entry j cannot prove any entry against the root it signed before."""
    signed_root = rfc9162.mth(ENTRIES[:n])
    for j in range(n):
        forged = _rewritten(j, n)
        forged_leaves = [merkle.leaf_hash(e) for e in forged]
        for m in range(n):
            proof = merkle.inclusion_proof(forged_leaves, m)
            assert not merkle.verify_inclusion(m, n, forged_leaves[m], proof, signed_root), (
                j,
                m,
                n,
            )


@pytest.mark.parametrize("n", ALL_SIZES)
def test_every_consistency_proof_verifies_and_every_alteration_fails(n):
    new_root = rfc9162.mth(ENTRIES[:n])
    for m in range(1, n + 1):
        old_root = rfc9162.mth(ENTRIES[:m])
        proof = rfc9162.proof(m, ENTRIES[:n])
        assert merkle.verify_consistency(m, n, old_root, new_root, proof), (m, n)
        for i in range(len(proof)):
            changed = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
            assert not merkle.verify_consistency(m, n, old_root, new_root, changed)
        if proof:
            assert not merkle.verify_consistency(m, n, old_root, new_root, proof[:-1])
        assert not merkle.verify_consistency(m, n, old_root, new_root, [*proof, LEAVES[0]])
        assert not merkle.verify_consistency(m, n, _flip(old_root), new_root, proof)
        assert not merkle.verify_consistency(m, n, old_root, _flip(new_root), proof)
        assert not merkle.verify_consistency(m, n, old_root, os.urandom(32), proof)
        for other in range(1, MAX + 1):
            if other != m and other <= n:
                assert not merkle.verify_consistency(other, n, old_root, new_root, proof), (
                    m,
                    other,
                    n,
                )
        for size in range(m, MAX + 1):
            if size != n and len(merkle.consistency_ranges(m, size)) != len(proof):
                assert not merkle.verify_consistency(m, size, old_root, new_root, proof), (
                    m,
                    n,
                    size,
                )
        assert not merkle.verify_consistency(0, n, old_root, new_root, proof)
        assert not merkle.verify_consistency(m, m - 1, old_root, new_root, proof)
        assert not merkle.verify_consistency(m, n, old_root[:31], new_root, proof)


@pytest.mark.parametrize("n", ALL_SIZES)
def test_a_rewritten_history_is_never_consistent_with_the_old_signed_root(n):
    """Rewrite any entry before the old size: no proof from the forged tree links the roots."""
    for m in range(1, n + 1):
        signed_old_root = rfc9162.mth(ENTRIES[:m])
        for j in range(m):
            forged = _rewritten(j, n)
            forged_leaves = [merkle.leaf_hash(e) for e in forged]
            forged_root = merkle.root(forged_leaves)
            if m == n:
                assert not merkle.verify_consistency(m, n, signed_old_root, forged_root, [])
                continue
            proof = merkle.consistency_proof(forged_leaves, m)
            assert not merkle.verify_consistency(m, n, signed_old_root, forged_root, proof), (
                j,
                m,
                n,
            )


def test_equal_sizes_are_consistent_only_with_an_empty_proof_and_equal_roots():
    r = merkle.root(LEAVES[:5])
    assert merkle.verify_consistency(5, 5, r, r, [])
    assert not merkle.verify_consistency(5, 5, r, _flip(r), [])
    assert not merkle.verify_consistency(5, 5, r, r, [r])


def test_ranges_refuse_out_of_range_arguments():
    for index, size in ((0, 0), (5, 5), (-1, 3)):
        with pytest.raises(ValueError):
            merkle.inclusion_ranges(index, size)
    for old, new in ((0, 5), (6, 5), (-1, 2)):
        with pytest.raises(ValueError):
            merkle.consistency_ranges(old, new)
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(1, 3)  # [1, 3) is not a node of any RFC tree
    with pytest.raises(ValueError):
        merkle.inclusion_proof(LEAVES[:3], 3)


@pytest.mark.parametrize("n", [*ALL_SIZES, 200, 513])
def test_proofs_from_perfect_subtrees_match_the_reference(n):
    """The range decomposition the database-backed prover uses gives the RFC's proofs."""
    entries = [f"e{i}".encode() for i in range(n)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    calls: list[tuple[int, int]] = []

    def subtree(level: int, index: int) -> bytes:
        calls.append((level, index))
        lo, hi = index << level, (index + 1) << level
        assert hi <= n, "only complete subtrees are ever needed"
        return merkle.root(leaves[lo:hi])

    indexes = range(n) if n <= MAX else (0, 1, n // 2, n - 2, n - 1)
    for m in indexes:
        ranges = merkle.inclusion_ranges(m, n)
        assert merkle.hash_ranges(ranges, subtree) == rfc9162.path(m, entries)
        # O(log n) subtrees per proof, not O(n).
        assert len(merkle.subtrees_of(ranges)) <= 2 * n.bit_length()
    for m in indexes:
        if m == 0:
            continue
        ranges = merkle.consistency_ranges(m, n)
        assert merkle.hash_ranges(ranges, subtree) == rfc9162.proof(m, entries)
        assert len(merkle.subtrees_of(ranges)) <= 3 * n.bit_length()


def test_frontier_tracks_the_root_and_reports_every_completed_subtree():
    entries = [os.urandom(6) for _ in range(300)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    f = merkle.Frontier()
    assert f.root() == merkle.EMPTY_ROOT
    seen: dict[tuple[int, int], bytes] = {}
    for n, leaf in enumerate(leaves, start=1):
        for level, index, h in f.append(leaf):
            lo, hi = index << level, (index + 1) << level
            assert hi == n and h == merkle.root(leaves[lo:hi])
            seen[(level, index)] = h
        assert f.size == n
        assert f.root() == rfc9162.mth(entries[:n])
        again = merkle.Frontier.from_bytes(f.size, f.to_bytes())
        assert again.root() == f.root() and again.hashes == f.hashes
    # Every perfect subtree of the final tree was reported exactly once along the way.
    expected = {(lv, i) for lv in range(9) for i in range(300 >> lv)}
    assert set(seen) == expected


def test_frontier_refuses_a_size_that_does_not_match_its_hashes():
    with pytest.raises(ValueError):
        merkle.Frontier(3, [LEAVES[0]])
    with pytest.raises(ValueError):
        merkle.Frontier(1, [b"short"])
    with pytest.raises(ValueError):
        merkle.Frontier.from_bytes(1, b"x" * 33)
    with pytest.raises(ValueError):
        merkle.Frontier(-1, [])
