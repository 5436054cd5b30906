"""gunicorn configuration shared by the Procfile and ``staple-collector serve``.

    gunicorn -c python:collector.gunicorn_conf --bind 0.0.0.0:8000 'collector:create_app()'

Worker processes and threads come from WEB_CONCURRENCY and WEB_THREADS
(strictly parsed like every other setting). gthread workers: the report
endpoint spends its time waiting on Redis, so threads overlap that wait
cheaply, and processes use both cores.

Metrics: every worker process counts into files under
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory when unset), which
``/metrics`` adds up; a dead worker's live gauges are dropped.

Logs: one JSON object per line (``collector.logs``); gunicorn's access log is
off, since it would print client addresses (the collector's own request
metrics replace it).
"""

import os
import tempfile

from collector import logs as _logs
from collector import settings as _settings

_values = _settings.load()

if not os.environ.get(_settings.METRICS_DIR_ENV):
    os.environ[_settings.METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="staple-metrics-")

workers = _values["WEB_CONCURRENCY"]
threads = _values["WEB_THREADS"]
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
keepalive = 5
# Do not let a slow client hold a worker with an endless header section.
limit_request_line = 4094
limit_request_fields = 100
# gunicorn 25.1+ opens a control socket in $HOME shared by every instance on the host.
control_socket_disable = True
accesslog = None
logconfig_dict = _logs.gunicorn_logconfig(_values["LOG_LEVEL"])
# gunicorn formats every access-log line when any log configuration is set, even
# with no access log; this logger skips that work (3-4% of a worker's time).
logger_class = "collector.logs.GunicornLogger"


def prepare_metrics_dir(path: str) -> None:
    """Create the metrics directory; remove files of processes that no longer run.

    Files of live processes stay: an alert worker started before the web app
    may share the directory. Runs before prometheus_client is imported here
    (importing collector.metrics creates files).
    """
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        stem, _, ext = name.rpartition(".")
        pid = stem.rpartition("_")[2]
        if ext == "db" and pid.isdigit() and not _alive(int(pid)):
            os.unlink(os.path.join(path, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server):  # noqa: ANN001, ARG001 - gunicorn's hook signature
    prepare_metrics_dir(os.environ[_settings.METRICS_DIR_ENV])


def child_exit(server, worker):  # noqa: ANN001, ARG001
    # A dead worker's live gauges go; its counters stay in the sum.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
