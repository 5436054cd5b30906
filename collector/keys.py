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
es:{S}:h:<host>:al                          HASH    HOUR_RETENTION, refreshed every 64 reports;
                                                    alert state of the host: st (ok, firing,
                                                    resolved), id, burst, started, last,
                                                    notified, resolved, sev, reopened, total,
                                                    counts ``s:``/``c:``/``d:``/``r:<value>``
                                                    (``r`` = source: report or probe)
es:{S}:h:<host>:aw                          ZSET    alert window; the latest reports (at most
                                                    min-reports of them), score = time
es:{S}:h:<host>:ac                          ZSET    alert window; the latest distinct client
                                                    hashes (at most min-clients), score = time
es:{S}:h:<host>:acl                         HLL     as the alert state; distinct clients of the
                                                    current incident
es:{S}:firing                               ZSET    none; hosts whose incident is firing,
                                                    score = when it (last) fired
es:{S}:incseq                               STRING  none; incident id counter
es:{S}:incidents                            ZSET    none, capped at 500 per site; incident
                                                    ids by start time
es:{S}:inc                                  HASH    none, capped with the index; incident id ->
                                                    JSON record as of its last transition
es:{S}:outbox                               STREAM  MAXLEN ~ 10000; notifications to deliver,
                                                    read by the worker's consumer group
                                                    ``workers``
es:{S}:retry                                ZSET    none; outbox entry id -> due time of the
                                                    next attempt (or lease end while a worker
                                                    holds it)
es:{S}:retry:data                           HASH    none; outbox entry id -> JSON event and
                                                    attempt count
es:{S}:deliveries                           STREAM  MAXLEN ~ 1000; delivery log (attempts)
es:{S}:dead                                 STREAM  MAXLEN ~ 1000; dead letters
es:{S}:rl:c:<client-hash>:<window>         STRING  RATE_LIMIT_WINDOW; reports from one client
                                                    in one fixed window (client rate limit)
es:{S}:rl:s:<window>                        STRING  RATE_LIMIT_WINDOW; accepted reports of the
                                                    site in one window (site rate limit)
es:worker:<name>                            STRING  60s; a worker's heartbeat
es:{S}:probes                               HASH    none; probe target ``host:port`` -> JSON
                                                    (host, port, servername, every, added_at)
es:{S}:probes:due                           ZSET    none; target -> next due time (lease end
                                                    while a worker probes it)
es:{S}:probe:<host:port>                    HASH    HOUR_RETENTION; last result (JSON), last_at,
                                                    consecutive failures, ok/fail totals
==========================================  ======  =======================================

Bucket field dimensions (``<dim>``): ``s`` response-status, ``c`` cert-status,
``d`` diagnosis code (``collector.diagnosis.CATALOGUE``), ``p`` probe results
(``p:ok``, ``p:fail``; a failing probe is also counted as a report).
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


# --- alerting and delivery -------------------------------------------------------

OUTBOX_GROUP = "workers"
OUTBOX_MAXLEN = 10000
LOG_MAXLEN = 1000


def alert_state(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:al"


def alert_window(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:aw"


def alert_window_clients(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:ac"


def incident_clients(site_id: str, host: str) -> str:
    return f"{_host(site_id, host)}:acl"


def firing(site_id: str) -> str:
    return f"{_site(site_id)}:firing"


def incident_seq(site_id: str) -> str:
    return f"{_site(site_id)}:incseq"


def incidents(site_id: str) -> str:
    return f"{_site(site_id)}:incidents"


def incident_records(site_id: str) -> str:
    return f"{_site(site_id)}:inc"


def outbox(site_id: str) -> str:
    return f"{_site(site_id)}:outbox"


def retry(site_id: str) -> str:
    return f"{_site(site_id)}:retry"


def retry_data(site_id: str) -> str:
    return f"{_site(site_id)}:retry:data"


def deliveries(site_id: str) -> str:
    return f"{_site(site_id)}:deliveries"


def dead(site_id: str) -> str:
    return f"{_site(site_id)}:dead"


def rate_client(site_id: str, client_hash: str, window: int) -> str:
    return f"{_site(site_id)}:rl:c:{client_hash}:{window}"


def rate_site(site_id: str, window: int) -> str:
    return f"{_site(site_id)}:rl:s:{window}"


def worker(name: str) -> str:
    return f"{PREFIX}:worker:{name}"


def probes(site_id: str) -> str:
    return f"{_site(site_id)}:probes"


def probes_due(site_id: str) -> str:
    return f"{_site(site_id)}:probes:due"


def probe_state(site_id: str, target: str) -> str:
    return f"{_site(site_id)}:probe:{target}"
