"""The web tier's kit: how many web processes by default, and the connection pool across fork()."""

import os
import sys


def cpus_available() -> int:
    """CPUs this process may run on (a container's cpuset or taskset counts, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def forget_inherited_pools() -> None:
    """After fork, in the child: drop the parent's pools so the next query opens a new pool.

    The inherited pool's connections share their sockets with the parent, and its background
    threads did not survive the fork. Dropping the references is safe: psycopg never sends the
    goodbye message for a connection that another process opened (it checks the pid).
    """
    backend = sys.modules.get("django.db.backends.postgresql.base")
    if backend is not None:
        backend.DatabaseWrapper._connection_pools.clear()


def close_database_connections() -> None:
    """Close this process's connections and pools: for a process that serves no requests itself
    (`manage.py serve` once its children run), so PostgreSQL counts only the processes that do."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
    backend = sys.modules.get("django.db.backends.postgresql.base")
    if backend is not None:
        pools = backend.DatabaseWrapper._connection_pools
        while pools:
            pools.popitem()[1].close()


def forget_pools_in_forked_children() -> None:
    """Register `forget_inherited_pools` to run in every child this process forks (once per process)."""
    os.register_at_fork(after_in_child=forget_inherited_pools)
