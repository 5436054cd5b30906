"""One way to open Redis: a single server, or a Redis Cluster (``REDIS_CLUSTER``).

Every caller (the app, the worker, the commands) goes through ``connect`` so a
cluster deployment changes one setting, not code paths. All keys of one site
carry its hash tag (``collector.keys``), so scripts and transactions never span
slots; pipelines without a transaction may (redis-py splits them per node).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import RedisCluster

Client = redis.Redis | RedisCluster


def connect(url: str, *, cluster: bool = False, timeout: float = 2.0,
            health_check_interval: int = 30) -> Any:
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": health_check_interval,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def connect_config(values: Any, url: str | None = None, timeout: float | None = None) -> Any:
    """``connect`` with REDIS_URL, REDIS_CLUSTER and REDIS_TIMEOUT from settings."""
    return connect(url or values["REDIS_URL"], cluster=values["REDIS_CLUSTER"],
                   timeout=values["REDIS_TIMEOUT"] if timeout is None else timeout)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def site_client(client: Any, site_id: str) -> Any:
    """The connection holding every key of ``site_id``.

    On a single Redis that is ``client``. On a cluster it is the plain client of
    the primary that owns the site's hash slot: redis-py refuses scripts inside
    cluster pipelines, and all of a site's keys share one slot, so a pipeline
    on that node carries a report's script and counters in one round trip.
    """
    if not isinstance(client, RedisCluster):
        return client
    from collector import keys

    return client.get_node_from_key(keys.site(site_id)).redis_connection


def by_node(client: Any, site_ids: list[str]) -> list[tuple[Any, list[str]]]:
    """Sites grouped by the connection that holds them (one group on a single Redis)."""
    if not isinstance(client, RedisCluster):
        return [(client, list(site_ids))]
    from collector import keys

    groups: dict[str, tuple[Any, list[str]]] = {}
    for site_id in site_ids:
        node = client.get_node_from_key(keys.site(site_id))
        groups.setdefault(node.name, (node.redis_connection, []))[1].append(site_id)
    return list(groups.values())


def run(client: Any, site_id: str | None, queue: Callable[[Any, bool], None], *scripts: str,
        transaction: bool = False, conn: Any = None) -> list[Any]:
    """Queue commands on the site's connection and execute them as one round trip.

    ``queue(pipe, first)`` adds the commands. When Redis does not know a script
    yet (a fresh or restarted server) the commands around the scripts went
    through: the scripts are loaded and ``queue`` is called again with
    ``first=False`` to redo the script calls only. When a cluster slot moved
    (resharding), the slot map is refreshed and everything is sent again.
    """
    target = conn if conn is not None else site_client(client, site_id or "")
    first = True
    for _ in range(3):
        pipe = target.pipeline(transaction=transaction)
        queue(pipe, first)
        try:
            return list(pipe.execute())
        except redis.exceptions.NoScriptError:
            for script in scripts:
                target.script_load(script)
            first = False
        except (redis.exceptions.MovedError, redis.exceptions.AskError):
            if not isinstance(client, RedisCluster) or site_id is None:
                raise
            client.nodes_manager.initialize()
            target = site_client(client, site_id)
    pipe = target.pipeline(transaction=transaction)
    queue(pipe, first)
    return list(pipe.execute())
