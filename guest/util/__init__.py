"""Shared utilities of the engine: small helpers with one home each, used by the services and the API alike.
Nothing here imports the engine's services or its HTTP layer."""
