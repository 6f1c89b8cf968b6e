"""The HTTP layer: routers, schemas, authentication dependencies, the Authlib adapter, and the
one place where domain errors become RFC 9457 problem documents."""
