"""``staple-collector``: run the collector and manage sites."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from collector import __version__, embedded, hostnames, settings, sites
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
        yield redis.Redis.from_url(values["REDIS_URL"], socket_timeout=timeout)
        return
    data_dir = Path(values["STAPLE_DATA_DIR"]).resolve()
    try:
        binary = embedded.find_redis_server(values["REDIS_SERVER_BIN"])
        with embedded.for_command(data_dir, binary) as url:
            yield redis.Redis.from_url(url, socket_timeout=timeout)
    except embedded.EmbeddedError as exc:
        _fail(str(exc))


# --- serve -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    values = _load_settings(args)
    from gunicorn.app.base import BaseApplication

    import collector

    data_dir = Path(values["STAPLE_DATA_DIR"]).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server: embedded.Embedded | None = None
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
        try:
            collector.create_app()  # fail here, once, rather than in every worker
        except settings.SettingsError as exc:
            _fail(str(exc))

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                self.cfg.set("bind", [args.bind])
                self.cfg.set("workers", values["WEB_CONCURRENCY"])
                self.cfg.set("threads", values["WEB_THREADS"])
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("timeout", 30)
                self.cfg.set("graceful_timeout", 10)
                self.cfg.set("keepalive", 5)
                if "control_socket_disable" in self.cfg.settings:
                    # gunicorn 25.1+ opens a control socket under $HOME shared by every
                    # instance; one collector per data dir has no use for it.
                    self.cfg.set("control_socket_disable", True)

            def load(self) -> Any:
                return collector.create_app()

        print(f"staple-collector {__version__}", flush=True)
        print(f"  listening on  http://{args.bind}", flush=True)
        print(f"  public URL    {values['PUBLIC_URL']}", flush=True)
        print(f"  data in       {data_dir}", flush=True)
        print(f"  storage       {redis_line}", flush=True)
        Server().run()
    finally:
        if server is not None and os.getpid() == master:
            server.stop()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


# --- site ----------------------------------------------------------------------


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
    serve.set_defaults(func=cmd_serve)

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

    header = sub.add_parser("header", parents=[common], help="print the Expect-Staple header for a site")
    header.add_argument("site", help="site id")
    header.add_argument("--max-age", type=int, default=sites.DEFAULT_MAX_AGE,
                        help=f"seconds (default {sites.DEFAULT_MAX_AGE})")
    header.add_argument("--include-subdomains", action="store_true")
    header.add_argument("--preload", action="store_true")
    header.set_defaults(func=cmd_site_header)

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
