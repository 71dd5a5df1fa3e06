"""skiff, the pure-Python docker client: transport, API, config, formatting and commands."""
