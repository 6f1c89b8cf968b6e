"""Shared foundations: settings, database engine and sessions, keys, ids, domain errors."""
