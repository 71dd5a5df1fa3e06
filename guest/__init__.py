"""skiffd: a container engine that serves the Docker Engine API (runs inside the Skiff VM)."""

__version__ = "0.1.0"
