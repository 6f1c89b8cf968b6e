"""Record ingest, pseudonymization, the encrypted record vault, and retention."""
