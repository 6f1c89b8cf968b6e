"""One router per resource of the public contract."""
