"""A deterministic discrete-event simulation of a cluster distribution (issue 16):
one origin seeding a file and N nodes each reading the whole file sequentially
through a mount, driving torrentfs's real pure cores. See ``swarm`` for the model."""
