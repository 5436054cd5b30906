"""Every Redis key the collector uses, in one place.

All keys of one site carry the hash tag ``{<site-id>}``, so every key that one
report touches (host buckets, the site's host index and counters) lands on one
Redis Cluster slot: the ingest script may name them all, and one report is one
round trip on a single Redis and on a cluster alike. The trade-off is that one
site lives on one cluster node; sites, not hosts, are the unit of sharding.

Hostnames in key names are already normalised (IDNA A-labels, lower case, only
``[a-z0-9.-]``), so they need no escaping.

==========================================  ======  =======================================
key                                         type    TTL / lifetime
==========================================  ======  =======================================
es:sites                                    SET     none; ids of all sites
es:token:<sha256(token)>                    STRING  none; site id owning that API token
es:{S}:site                                 HASH    none; name, created_at, hosts (JSON
                                                    list of patterns), token_sha256
es:{S}:hosts                                ZSET    HOUR_RETENTION, refreshed per report;
                                                    member host, score last-seen epoch;
                                                    members older than HOUR_RETENTION are
                                                    pruned by the ingest script
es:{S}:stats                                HASH    none; ``accepted``, ``filtered:<reason>``,
                                                    ``rejected:<reason>`` totals
es:{S}:stats:<yyyymmdd>                     HASH    STATS_DAY_TTL; the same per UTC day
es:{S}:h:<host>:meta                        HASH    HOUR_RETENTION, refreshed per report;
                                                    first_seen, last_seen, last_status,
                                                    last_diagnosis, last_severity,
                                                    must_staple (1/0), total, port:<n> counts
es:{S}:h:<host>:m:<epoch-hour>              HASH    MINUTE_RETENTION + 1h; per-minute counts
                                                    for one hour, field ``<minute>|<dim>:<v>``
es:{S}:h:<host>:H:<epoch-day>               HASH    HOUR_RETENTION + 1d; per-hour counts for
                                                    one UTC day, field ``<hour>|<dim>:<v>``
es:{S}:h:<host>:ch:<epoch-hour>             HLL     48h + 1h; distinct clients in that hour
es:{S}:h:<host>:cd:<epoch-day>              HLL     HOUR_RETENTION + 1d; distinct clients
                                                    in that UTC day
es:{S}:h:<host>:samples                     STREAM  HOUR_RETENTION; recent sample reports,
                                                    MAXLEN ~ SAMPLES_PER_HOST
es:{S}:dd:<digest>                          STRING  DEDUP_WINDOW; "this client sent this
                                                    report recently", sample not stored again
==========================================  ======  =======================================

Bucket field dimensions (``<dim>``): ``s`` response-status, ``c`` cert-status,
``d`` diagnosis code (``collector.diagnosis.CATALOGUE``).
"""

from __future__ import annotations

PREFIX = "es"

STATS_DAY_TTL = 32 * 86400
CLIENT_HOUR_TTL = 49 * 3600
# How many hourly client estimates the "distinct clients in 24h" figure unions.
CLIENT_HOURS_FOR_DAY = 24

SITES = f"{PREFIX}:sites"


def token(token_sha256: str) -> str:
    return f"{PREFIX}:token:{token_sha256}"


def _site(site_id: str) -> str:
    return f"{PREFIX}:{{{site_id}}}"


def site(site_id: str) -> str:
    return f"{_site(site_id)}:site"


def hosts(site_id: str) -> str:
    return f"{_site(site_id)}:hosts"


def stats(site_id: str) -> str:
    return f"{_site(site_id)}:stats"


def stats_day(site_id: str, yyyymmdd: str) -> str:
    return f"{_site(site_id)}:stats:{yyyymmdd}"


def _host(site_id: str, host: str) -> str:
    return f"{_site(site_id)}:h:{host}"


def host_meta(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:meta"


def minute_bucket(site_id: str, host: str, epoch_hour: int) -> str:
    return f"{_host(site_id, host)}:m:{epoch_hour}"


def hour_bucket(site_id: str, host: str, epoch_day: int) -> str:
    return f"{_host(site_id, host)}:H:{epoch_day}"


def clients_hour(site_id: str, host: str, epoch_hour: int) -> str:
    return f"{_host(site_id, host)}:ch:{epoch_hour}"


def clients_day(site_id: str, host: str, epoch_day: int) -> str:
    return f"{_host(site_id, host)}:cd:{epoch_day}"


def samples(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:samples"


def dedup(site_id: str, digest: str) -> str:
    return f"{_site(site_id)}:dd:{digest}"
