"""The peers of the side-by-side benchmark: the same workload on Celery + Redis and on
Procrastinate (PostgreSQL), behind one interface (``common.Peer``) so that ``bench.e2e``
can print our/their ratios.

    from bench.peers.celery_peer import CeleryPeer
    from bench.peers.procrastinate_peer import ProcrastinatePeer

    with CeleryPeer() as peer:
        peer.throughput(3000)

Bench-only: Celery and Procrastinate come from the ``bench`` extra
(``pip install -e '.[bench]'``), never from the service's runtime dependencies, and
nothing here imports the service's code.
"""
