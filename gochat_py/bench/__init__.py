"""``gochat-py bench``: drives a running gochat-py system through its public interfaces only.

Modes (``room``, ``private``, ``rate``, ``idle``, ``floor``) register users over the HTTP api,
hold websocket (or TCP) sockets in several client processes, push messages through the api and
print one JSON summary on stdout; ``plot`` draws PNGs from such summaries and ``sweep`` runs the
documented set and regenerates ``docs/bench``.  See ``docs/benchmarks.md``.
"""
