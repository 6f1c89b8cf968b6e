"""The tamper-evident access log: events in a RFC 9162 Merkle tree with signed checkpoints."""
