"""Single-node swarm mode: the cluster (init/leave/update, the node, secrets, configs) and its services and tasks.

Like a dockerd, skiffd is not in a swarm until `docker swarm init`; until then every cluster endpoint answers
503 as a swarm-less dockerd does. Once initialised, this node is the only manager and worker: services run their
tasks as ordinary containers of this engine (guest/swarm/contracts.py says what crosses between the parts).
"""
