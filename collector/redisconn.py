"""One way to open Redis: a single server, or a Redis Cluster (``REDIS_CLUSTER``).

Every caller (the app, the worker, the commands) goes through ``connect`` so a
cluster deployment changes one setting, not code paths. All keys of one site
carry its hash tag (``collector.keys``), so scripts and transactions never span
slots; pipelines without a transaction may (redis-py splits them per node).
"""

from __future__ import annotations

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


Command = tuple[str, tuple[Any, ...]]


def run(client: Any, site_id: str | None, commands: list[Command], *scripts: str,
        conn: Any = None) -> list[Any]:
    """Send ``commands`` (method name, arguments) on the site's connection as one pipeline.

    One round trip in the normal case. A command that failed because Redis does
    not know its script yet (a fresh or restarted server) is sent again after
    loading ``scripts``; one that failed because its cluster slot moved
    (resharding) is sent again after refreshing the slot map. Only the failed
    commands are repeated, so nothing is counted twice. Any other error raises.
    """
    target = conn if conn is not None else site_client(client, site_id or "")
    if len(commands) == 1:
        return [_one(client, site_id, target, commands[0], scripts)]
    results: list[Any] = [None] * len(commands)
    todo = list(range(len(commands)))
    for attempt in range(3):
        pipe = target.pipeline(transaction=False)
        for index in todo:
            name, args = commands[index]
            getattr(pipe, name)(*args)
        answers = pipe.execute(raise_on_error=False)
        again: list[int] = []
        missing_script = moved = False
        for index, answer in zip(todo, answers, strict=True):
            if isinstance(answer, redis.exceptions.NoScriptError):
                missing_script = True
                again.append(index)
            elif isinstance(answer, (redis.exceptions.MovedError, redis.exceptions.AskError)):
                moved = True
                again.append(index)
            elif isinstance(answer, Exception):
                raise answer
            else:
                results[index] = answer
        if not again:
            return results
        if attempt == 2:
            break
        if moved:
            if not isinstance(client, RedisCluster) or site_id is None:
                break
            client.nodes_manager.initialize()
            target = site_client(client, site_id)
        if missing_script:
            for script in scripts:
                target.script_load(script)
        todo = again
    pending = [a for a in answers if isinstance(a, Exception)]
    raise pending[0]


def _one(client: Any, site_id: str | None, target: Any, command: Command, scripts: tuple[str, ...]) -> Any:
    """``run`` for one command: sent as is, without a pipeline's bookkeeping."""
    name, args = command
    for attempt in range(3):
        try:
            return getattr(target, name)(*args)
        except redis.exceptions.NoScriptError:
            if attempt == 2:
                raise
            for script in scripts:
                target.script_load(script)
        except (redis.exceptions.MovedError, redis.exceptions.AskError):
            if attempt == 2 or not isinstance(client, RedisCluster) or site_id is None:
                raise
            client.nodes_manager.initialize()
            target = site_client(client, site_id)
    raise AssertionError("unreachable")
