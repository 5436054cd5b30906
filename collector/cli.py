"""``staple-collector``: run the collector and manage sites."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from collector import __version__, alerts, embedded, hostnames, outbound, redisconn, settings, sites, webhooks
from collector import inspect as inspection


def _fail(message: str, code: int = 2) -> None:
    print(f"staple-collector: {message}", file=sys.stderr)
    raise SystemExit(code)


def _load_settings(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "data_dir", None):
        os.environ["STAPLE_DATA_DIR"] = args.data_dir
    try:
        return settings.load()
    except settings.SettingsError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


@contextmanager
def _redis(values: dict[str, Any]) -> Iterator[redis.Redis]:
    """Redis for a short command: REDIS_URL, the running embedded server, or one for now."""
    timeout = values["REDIS_TIMEOUT"]
    if values["REDIS_URL"]:
        yield redisconn.connect_config(values)
        return
    data_dir = Path(values["STAPLE_DATA_DIR"]).resolve()
    try:
        binary = embedded.find_redis_server(values["REDIS_SERVER_BIN"])
        with embedded.for_command(data_dir, binary) as url:
            yield redis.Redis.from_url(url, socket_timeout=timeout)
    except embedded.EmbeddedError as exc:
        _fail(str(exc))


# --- serve -------------------------------------------------------------------


GUNICORN_SETTINGS = (
    "workers", "threads", "worker_class", "timeout", "graceful_timeout", "keepalive",
    "limit_request_line", "limit_request_fields", "control_socket_disable", "accesslog",
    "logconfig_dict", "logger_class", "child_exit",
)


def cmd_serve(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    from gunicorn.app.base import BaseApplication

    import collector

    data_dir = Path(values["STAPLE_DATA_DIR"]).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server: embedded.Embedded | None = None
    worker_process: subprocess.Popen[bytes] | None = None
    master = os.getpid()
    try:
        if values["REDIS_URL"]:
            redis_line = f"Redis at {_redact(values['REDIS_URL'])} (REDIS_URL)"
        else:
            try:
                _lock = embedded.hold_serve_lock(data_dir)  # noqa: F841 (held until exit)
                server = embedded.start_for_serve(
                    data_dir, embedded.find_redis_server(values["REDIS_SERVER_BIN"])
                )
            except embedded.EmbeddedError as exc:
                _fail(str(exc))
            assert server is not None
            # The web workers read this, as they would an operator's REDIS_URL.
            os.environ["REDIS_URL"] = server.url
            redis_line = (
                f"embedded redis-server (pid {server.process.pid if server.process else '?'}) "
                f"on {server.url.rsplit('@', 1)[-1]}"
            )
        collector.secret_key(values["SECRET_KEY"], data_dir)
        # Metrics of the web workers and of the alert worker, added up by /metrics.
        os.environ.setdefault(settings.METRICS_DIR_ENV, str(data_dir / "metrics"))
        from collector import gunicorn_conf

        gunicorn_conf.on_starting(None)
        try:
            collector.create_app()  # fail here, once, rather than in every worker
        except settings.SettingsError as exc:
            _fail(str(exc))

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                # The Procfile's configuration (collector.gunicorn_conf), with our bind.
                for name in GUNICORN_SETTINGS:
                    if name in self.cfg.settings:
                        self.cfg.set(name, getattr(gunicorn_conf, name))
                self.cfg.set("bind", [args.bind])

            def load(self) -> Any:
                return collector.create_app()

        print(f"staple-collector {__version__}", flush=True)
        print(f"  listening on  http://{args.bind}", flush=True)
        print(f"  public URL    {values['PUBLIC_URL']}", flush=True)
        print(f"  data in       {data_dir}", flush=True)
        print(f"  storage       {redis_line}", flush=True)
        if not args.no_worker:
            # Its own process (as under the Procfile), started before gunicorn forks.
            worker_process = subprocess.Popen([sys.executable, "-m", "collector.cli", "worker"])
            print(f"  alert worker  pid {worker_process.pid}", flush=True)
        else:
            print("  alert worker  not started (--no-worker)", flush=True)
        Server().run()
    finally:
        if os.getpid() == master:
            if worker_process is not None:
                worker_process.terminate()
                try:
                    worker_process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker_process.kill()
            if server is not None:
                server.stop()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


# --- site ----------------------------------------------------------------------


# --- users -----------------------------------------------------------------------


def _read_password(confirm: bool = True) -> str:
    """From a prompt (twice) on a terminal, else the first line of stdin; never an argument."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("Password (12 characters or more): ")
        if confirm and getpass.getpass("Again: ") != first:
            _fail("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _check_sites(client: Any, site_ids: list[str]) -> None:
    for site_id in site_ids:
        if sites.get(client, site_id) is None:
            _fail(f"no site {site_id}")


def cmd_user_create(args: argparse.Namespace) -> None:
    from collector import users

    values = _load_settings(args)
    password = _read_password()
    with _redis(values) as client:
        _check_sites(client, args.site or [])
        try:
            user = users.create(client, args.email, password, admin=args.admin, sites=args.site or [])
        except users.UserError as exc:
            _fail(str(exc))
    scope = "every site (admin)" if user.admin else (", ".join(user.sites) or "no site yet")
    print(f"User {user.email} created; sees {scope}.")
    print(f"Sign in at {values['PUBLIC_URL']}/login")


def cmd_user_passwd(args: argparse.Namespace) -> None:
    from collector import users

    values = _load_settings(args)
    password = _read_password()
    with _redis(values) as client:
        try:
            users.set_password(client, args.email, password)
        except users.UserError as exc:
            _fail(str(exc))
    print(f"Password of {args.email} changed; their sessions are signed out.")


def cmd_user_grant(args: argparse.Namespace) -> None:
    from collector import users

    values = _load_settings(args)
    with _redis(values) as client:
        _check_sites(client, args.site or [])
        try:
            user = users.grant(client, args.email, args.site or [], admin=True if args.admin else None)
        except users.UserError as exc:
            _fail(str(exc))
    print(f"{user.email} sees {'every site (admin)' if user.admin else ', '.join(user.sites) or 'no site'}.")


def cmd_user_list(args: argparse.Namespace) -> None:
    from collector import users

    values = _load_settings(args)
    with _redis(values) as client:
        found = users.list_all(client)
    rows = [{"email": u.email, "admin": u.admin, "sites": list(u.sites)} for u in found]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['email']}  {'admin' if row['admin'] else ', '.join(row['sites']) or '-'}")


def cmd_site_create(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    try:
        patterns = [hostnames.normalise_pattern(p) for p in args.host or []]
    except hostnames.HostnameError as exc:
        _fail(f"--host: {exc}")
    with _redis(values) as client:
        try:
            new = sites.create(client, args.name, patterns)
        except ValueError as exc:
            _fail(str(exc))
    info = sites.describe(new, values["PUBLIC_URL"])
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"Site {info['name']!r} created.")
    print(f"  id          {info['id']}")
    print(f"  hosts       {', '.join(info['hosts']) or 'any hostname'}")
    print(f"  report URI  {info['report_uri']}")
    print(f"  API token   {info['token']}")
    print("              (shown once and stored only hashed: keep it now)")
    print()
    print("Send this response header from your site:")
    print()
    print(f"  {info['header']}")


def cmd_site_list(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    with _redis(values) as client:
        found = sites.list_all(client)
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "hosts": list(s.hosts),
            "report_uri": sites.report_uri(values["PUBLIC_URL"], s.id),
        }
        for s in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("No sites yet: create one with `staple-collector site create NAME`.")
        return
    for row in rows:
        print(f"{row['id']}  {row['name']}  [{', '.join(row['hosts']) or 'any hostname'}]  {row['report_uri']}")


def cmd_site_header(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    with _redis(values) as client:
        site = sites.get(client, args.site)
    if site is None:
        _fail(f"no site {args.site!r} (see `staple-collector site list`)")
    print(sites.header_line(values["PUBLIC_URL"], site.id, args.max_age,
                            args.include_subdomains, args.preload))


def cmd_inspect(args: argparse.Namespace) -> None:
    try:
        with open(args.file, "rb") as handle:
            data = handle.read(1024 * 1024 + 1)
    except OSError as exc:
        _fail(f"cannot read {args.file}: {exc.strerror}", 1)
    if len(data) > 1024 * 1024:
        _fail(f"{args.file} is larger than 1 MiB; not a certificate, CSR or OCSP response", 1)
    try:
        result = inspection.inspect_bytes(data)
    except (inspection.InspectError, ValueError) as exc:
        _fail(f"{args.file}: {exc}", 1)
    print(json.dumps(result, indent=2) if args.json else inspection.render(result))


# --- worker, webhooks, alerts ------------------------------------------------------


def _long_running_redis(values: dict[str, Any]) -> redis.Redis:
    """Redis for a long-running process: REDIS_URL or the embedded one `serve` runs."""
    url = values["REDIS_URL"] or embedded.running_url(Path(values["STAPLE_DATA_DIR"]).resolve())
    if not url:
        _fail("no Redis: set REDIS_URL, or start `staple-collector serve` (which runs a worker itself)")
    timeout = max(values["REDIS_TIMEOUT"], 5)
    if values["REDIS_URL"]:
        return redisconn.connect_config(values, timeout=timeout)
    return redisconn.connect(url, timeout=timeout)


def _secret(values: dict[str, Any]) -> bytes:
    import collector

    return collector.secret_key(values["SECRET_KEY"], Path(values["STAPLE_DATA_DIR"]).resolve())


def cmd_worker(args: argparse.Namespace) -> None:
    from collector import logs

    values = _load_settings(args)
    logs.setup(values["LOG_LEVEL"])
    if values["WORKER_METRICS_PORT"]:
        from prometheus_client import start_http_server

        from collector import metrics

        start_http_server(values["WORKER_METRICS_PORT"], registry=metrics.registry(None, redis_state=False))
    from collector.worker import Worker

    client = _long_running_redis(values)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Worker(client, values, _secret(values)).run(stop)


def _site_or_fail(client: redis.Redis, site_id: str) -> sites.Site:
    site = sites.get(client, site_id)
    if site is None:
        _fail(f"no site {site_id!r} (see `staple-collector site list`)")
    assert site is not None
    return site


def cmd_site_webhook(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    with _redis(values) as client:
        site = _site_or_fail(client, args.site)
        if args.remove:
            webhooks.remove(client, site.id)
            print(json.dumps({"url": None}) if args.json else f"Webhook of {site.id} removed.")
            return
        if not args.url:
            hook = webhooks.get(client, site.id)
            if args.json:
                print(json.dumps(hook.describe() if hook else None, indent=2))
            elif hook is None:
                print(f"{site.id} has no webhook. Set one: staple-collector site webhook {site.id} URL")
            else:
                info = hook.describe()
                state = "enabled" if info["enabled"] else f"DISABLED: {info['disabled_reason']}"
                print(f"{info['destination']}  format {info['format']}  {state}")
            return
        try:
            url = webhooks.validate_url(args.url, values["WEBHOOK_ALLOW_PRIVATE"])
        except outbound.Refused as exc:
            _fail(f"webhook refused: {exc}")
        secret = webhooks.configure(client, site.id, url, args.format, _secret(values))
    if args.json:
        print(json.dumps({"url": url, "format": args.format, "secret": secret}, indent=2))
        return
    print(f"Webhook of {site.id} set: {url} ({args.format}).")
    print(f"  signing secret  {secret}")
    print("                  (shown once: keep it now to verify the webhook-signature header)")
    print(f"Send a test notification: staple-collector alert test {site.id}")


def cmd_site_alerts(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    changes: dict[str, int] = {}
    for name in alerts.POLICY_FIELDS:
        raw = getattr(args, name)
        if raw is None:
            continue
        flag = "--" + name.replace("_", "-")
        try:
            value = settings.parse_duration(raw) if name in alerts.DURATION_FIELDS else int(raw)
            changes[name] = alerts.check_override(name, value)
        except ValueError as exc:
            _fail(f"{flag}: {exc}")
    with _redis(values) as client:
        site = _site_or_fail(client, args.site)
        if args.reset:
            alerts.reset_overrides(client, site.id)
        alerts.set_overrides(client, site.id, changes)
        site = _site_or_fail(client, args.site)
    policy = alerts.effective(values, site.alerts).to_dict()
    if args.json:
        print(json.dumps({"site": site.id, "policy": policy, "overridden": sorted(site.alerts)}, indent=2))
        return
    for name, value in policy.items():
        mark = "(this site)" if name in site.alerts else "(default)"
        print(f"  {name.replace('_', '-'):<14} {value:<6} {mark}")
    print(f"Changes reach the report endpoint within {settings.format_duration(values['SITE_CACHE_TTL'])}.")


def cmd_alert_test(args: argparse.Namespace) -> None:
    from collector import worker

    values = _load_settings(args)
    with _redis(values) as client:
        site = _site_or_fail(client, args.site)
        try:
            entry = worker.send_test(client, values, _secret(values), site)
        except LookupError as exc:
            _fail(str(exc), 1)
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        status = entry["status_code"] if entry["status_code"] is not None else "no response"
        line = f"test notification to {entry['destination']}: {entry['outcome']} (HTTP {status}, "
        line += f"{entry['latency_ms']} ms)"
        if entry["error"] and entry["outcome"] != "delivered":
            line += f": {entry['error']}"
        print(line)
    if entry["outcome"] != "delivered":
        raise SystemExit(1)


# --- probes ----------------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> None:
    from collector import probe

    values = _load_settings(args)
    try:
        target = probe.parse_target(args.target)
    except ValueError as exc:
        _fail(f"{args.target}: {exc}")
    target.servername = args.servername
    try:
        result = probe.probe(target, ca_file=args.ca_file, timeout=args.timeout or values["PROBE_TIMEOUT"])
    except probe.ProbeError as exc:
        if args.json:
            print(json.dumps({"host": target.host, "port": target.port, "error": str(exc)}, indent=2))
        else:
            print(f"staple-collector: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    data = result.to_dict()
    if args.report_to:
        data["reported"] = _report(args.report_to, result)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(probe.render(data))
        if args.report_to:
            print(f"  report        {data['reported']}")
    raise SystemExit(0 if result.ok else 1)


def _report(uri: str, result: Any) -> str:
    """POST a failed result to a report URI as Chrome would have; a valid staple is not a report."""
    import urllib.error
    import urllib.request

    if result.ok:
        return "not sent: the staple is valid (Expect-Staple reports are for failures)"
    body = json.dumps(result.report()).encode()
    request = urllib.request.Request(
        uri, data=body, method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "staple-collector-probe"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"sent to {uri}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"NOT accepted by {uri}: HTTP {exc.code} {exc.read(300).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"NOT sent to {uri}: {getattr(exc, 'reason', exc)}"


def cmd_site_probe(args: argparse.Namespace) -> None:
    import time as _time

    from collector import probe, probes

    values = _load_settings(args)
    with _redis(values) as client:
        site = _site_or_fail(client, args.site)
        if args.probe_command == "add":
            try:
                target = probe.parse_target(args.target)
                target.servername = args.servername
                every = settings.parse_duration(args.every)
                entry = probes.add(client, site.id, target, every)
            except ValueError as exc:
                _fail(str(exc))
            if args.json:
                print(json.dumps({"target": entry.label, "hostname": entry.hostname, "every": entry.every}))
            else:
                print(f"Probing {entry.label} (as {entry.hostname}) every "
                      f"{settings.format_duration(entry.every)}; the worker runs it.")
            return
        if args.probe_command == "remove":
            try:
                parsed = probe.parse_target(args.target)
            except ValueError as exc:
                _fail(f"{args.target}: {exc}")
            if not probes.remove(client, site.id, f"{parsed.host}:{parsed.port}"):
                _fail(f"{site.id} has no probe target {parsed.host}:{parsed.port}", 1)
            print(json.dumps({"removed": f"{parsed.host}:{parsed.port}"}) if args.json
                  else f"Removed {parsed.host}:{parsed.port}.")
            return
        rows = probes.status(client, site.id, int(_time.time()))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"No probe targets. Add one: staple-collector site probe {site.id} add HOST[:PORT] --every 5m")
        return
    for row in rows:
        last = row["last_result"] or {}
        detail = last.get("error") or last.get("summary") or ""
        print(f"{row['target']:<30} every {settings.format_duration(row['every']):<5} {row['status']:<11} "
              f"last {row['last_probed_at'] or 'never'}  {detail}")


# --- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", help="data directory (default: STAPLE_DATA_DIR, ./staple-data)"
    )
    parser = argparse.ArgumentParser(
        prog="staple-collector", description="Expect-Staple report collector."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the web app")
    serve.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT (default 127.0.0.1:8000)")
    serve.add_argument("--no-worker", action="store_true",
                       help="do not run the alert worker alongside (run `staple-collector worker` yourself)")
    serve.set_defaults(func=cmd_serve)

    work = sub.add_parser("worker", parents=[common],
                          help="run the alert worker: deliver notifications, resolve incidents")
    work.set_defaults(func=cmd_worker)

    user = sub.add_parser("user", help="manage dashboard users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    u_create = user_sub.add_parser(
        "create", parents=[common],
        help="create a user (password from a prompt, or the first line of stdin when it is not a terminal)")
    u_create.add_argument("email")
    u_create.add_argument("--admin", action="store_true", help="sees every site")
    u_create.add_argument("--site", action="append", metavar="SITE", help="a site the user sees; repeatable")
    u_create.set_defaults(func=cmd_user_create)
    u_passwd = user_sub.add_parser("passwd", parents=[common], help="set a user's password (signs them out)")
    u_passwd.add_argument("email")
    u_passwd.set_defaults(func=cmd_user_passwd)
    u_grant = user_sub.add_parser("grant", parents=[common], help="give a user more sites, or admin")
    u_grant.add_argument("email")
    u_grant.add_argument("--site", action="append", metavar="SITE")
    u_grant.add_argument("--admin", action="store_true")
    u_grant.set_defaults(func=cmd_user_grant)
    u_list = user_sub.add_parser("list", parents=[common], help="list users")
    u_list.add_argument("--json", action="store_true")
    u_list.set_defaults(func=cmd_user_list)

    site = sub.add_parser("site", help="manage sites")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    create = site_sub.add_parser("create", parents=[common], help="create a site")
    create.add_argument("name")
    create.add_argument(
        "--host", action="append", metavar="PATTERN",
        help="accept reports only for this hostname (example.com or *.example.com); repeatable",
    )
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=cmd_site_create)
    listing = site_sub.add_parser("list", parents=[common], help="list sites")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=cmd_site_list)
    hook = site_sub.add_parser("webhook", parents=[common],
                               help="set, show or remove the site's webhook")
    hook.add_argument("site", help="site id")
    hook.add_argument("url", nargs="?", help="http(s) URL to POST notifications to (omit to show)")
    hook.add_argument("--format", choices=webhooks.FORMATS, default="json",
                      help="json (signed, Standard Webhooks), slack or discord (default json)")
    hook.add_argument("--remove", action="store_true", help="remove the webhook")
    hook.add_argument("--json", action="store_true", help="print one JSON object")
    hook.set_defaults(func=cmd_site_webhook)
    policy = site_sub.add_parser("alerts", parents=[common],
                                 help="show or override the site's alert thresholds")
    policy.add_argument("site", help="site id")
    policy.add_argument("--window", metavar="DURATION", help="sliding window, e.g. 5m")
    policy.add_argument("--min-reports", metavar="N", help="failure reports in the window to fire")
    policy.add_argument("--min-clients", metavar="N", help="distinct clients among them")
    policy.add_argument("--resolve-after", metavar="DURATION", help="quiet period to resolve, e.g. 15m")
    policy.add_argument("--repeat", metavar="DURATION", help="reminder interval while firing, 0 for none")
    policy.add_argument("--reset", action="store_true", help="drop this site's overrides first")
    policy.add_argument("--json", action="store_true", help="print one JSON object")
    policy.set_defaults(func=cmd_site_alerts)
    site_probe = site_sub.add_parser("probe", help="scheduled probe targets of a site")
    site_probe.add_argument("site", help="site id")
    probe_sub = site_probe.add_subparsers(dest="probe_command", required=True)
    p_add = probe_sub.add_parser("add", parents=[common], help="probe HOST[:PORT] on a schedule")
    p_add.add_argument("target", metavar="HOST[:PORT]")
    p_add.add_argument("--servername", help="SNI name (and the hostname results are filed under)")
    p_add.add_argument("--every", default="5m", help="interval, e.g. 5m (default 5m)")
    p_add.add_argument("--json", action="store_true")
    p_list = probe_sub.add_parser("list", parents=[common], help="targets with their latest result")
    p_list.add_argument("--json", action="store_true")
    p_remove = probe_sub.add_parser("remove", parents=[common], help="stop probing HOST[:PORT]")
    p_remove.add_argument("target", metavar="HOST[:PORT]")
    p_remove.add_argument("--json", action="store_true")
    site_probe.set_defaults(func=cmd_site_probe)

    header = sub.add_parser("header", parents=[common], help="print the Expect-Staple header for a site")
    header.add_argument("site", help="site id")
    header.add_argument("--max-age", type=int, default=sites.DEFAULT_MAX_AGE,
                        help=f"seconds (default {sites.DEFAULT_MAX_AGE})")
    header.add_argument("--include-subdomains", action="store_true")
    header.add_argument("--preload", action="store_true")
    header.set_defaults(func=cmd_site_header)

    probe_cmd = sub.add_parser("probe", parents=[common],
                               help="check a server's OCSP staple now, as a strict client would")
    probe_cmd.add_argument("target", metavar="HOST[:PORT]")
    probe_cmd.add_argument("--servername", help="SNI name and hostname to judge (default HOST)")
    probe_cmd.add_argument("--ca-file", help="PEM file of extra trusted roots")
    probe_cmd.add_argument("--timeout", type=float, help="seconds (default PROBE_TIMEOUT)")
    probe_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    probe_cmd.add_argument("--report-to", metavar="URI",
                           help="POST a failure as an Expect-Staple report to this report URI")
    probe_cmd.set_defaults(func=cmd_probe)

    alert = sub.add_parser("alert", help="alert notifications")
    alert_sub = alert.add_subparsers(dest="alert_command", required=True)
    test = alert_sub.add_parser("test", parents=[common],
                                help="send a test notification to the site's webhook now")
    test.add_argument("site", help="site id")
    test.add_argument("--json", action="store_true", help="print the delivery as JSON")
    test.set_defaults(func=cmd_alert_test)

    inspect = sub.add_parser(
        "inspect", help="decode a certificate, chain, CSR or OCSP response (PEM, DER or base64)"
    )
    inspect.add_argument("file")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except redis.exceptions.RedisError as exc:
        _fail(f"Redis is not reachable: {exc}")


if __name__ == "__main__":
    main()
