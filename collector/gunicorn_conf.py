"""gunicorn configuration shared by the Procfile and ``staple-collector serve``.

    gunicorn -c python:collector.gunicorn_conf --bind 0.0.0.0:8000 'collector:create_app()'

Worker processes and threads come from WEB_CONCURRENCY and WEB_THREADS
(strictly parsed like every other setting). gthread workers: the report
endpoint spends its time waiting on Redis, so threads overlap that wait
cheaply, and processes use both cores.
"""

from collector import settings as _settings

_values = _settings.load()

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
