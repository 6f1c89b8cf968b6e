"""Organizations, OAuth clients, signing keys and the framework-free OAuth 2.0 server core."""
