"""The demo initiative: a synthetic but realistic Collective Impact initiative (fixed seed)."""
