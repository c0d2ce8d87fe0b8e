"""The test harness: helpers the tests share, imported as ``tests.harness.X`` (and by
benchmarks/). No tests here.

- payload.py: deterministic bytes, a sample payload folder, tree and byte-for-byte
  comparisons, magnet links.
- command.py: running the real ``torrentfs`` command; the one-line error check; a
  pseudo-terminal.
- mounts.py: a ``torrentfs mount`` or ``seed`` the test started, always stopped by PID.
- swarm.py: real programs nobody here wrote (opentracker, libtorrent through
  peers/lt_peer.py); netns.py: network namespaces, transmission inside one, and
  clusters of namespaces on a bridge.
- fakepeer.py: scripted in-process peers for engine tests; webseeds.py: HTTP seeds.

May import: torrentfs (any layer), the standard library and test dependencies.
Imported by tests/ and benchmarks/; never by torrentfs. Fixtures stay in
tests/conftest.py.
"""
