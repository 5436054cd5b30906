"""A site's webhook: its configuration, signing secret, and the three payload formats.

* ``json``: a generic payload signed the Standard Webhooks way
  (https://www.standardwebhooks.com): headers ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "<id>.<timestamp>.<body>">``, keyed with the site's ``whsec_`` secret.
* ``slack``: a Slack incoming-webhook message (``text`` plus ``blocks``).
* ``discord``: a Discord webhook message (``content`` plus an embed, mentions off).

The signing secret has to be used, not just compared, so it cannot be stored
hashed: it is stored encrypted (AES-GCM) under a key derived from SECRET_KEY,
so a copy of Redis alone does not give it away. It is shown once, when set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector import diagnosis, keys, outbound, redisconn

FORMATS = ("json", "slack", "discord")
SECRET_PREFIX = "whsec_"
MAX_URL = 2000

TITLES = {
    "incident.firing": "Stapling is failing",
    "incident.reminder": "Stapling is still failing",
    "incident.resolved": "Stapling recovered",
    "test": "Test notification",
}


class SecretUnreadable(Exception):
    """The stored secret does not decrypt: SECRET_KEY changed since it was set."""


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str
    secret_box: str
    disabled: str | None
    set_at: int | None

    def destination(self) -> str:
        """The URL without its path and query, which may hold a token (Slack, Discord)."""
        return redacted(self.url)

    def describe(self) -> dict[str, Any]:
        from collector.store import iso

        return {
            "destination": self.destination(),
            "format": self.format,
            "enabled": self.disabled is None,
            "disabled_reason": self.disabled,
            "set_at": iso(self.set_at),
        }


def redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…" if parts.path.strip("/") or parts.query else f"{parts.scheme}://{host}{port}/"


def _box_key(secret_key: bytes) -> bytes:
    return hashlib.sha256(b"webhook-secret|" + secret_key).digest()


def seal(secret: str, secret_key: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_box_key(secret_key)).encrypt(nonce, secret.encode(), b"whsec")
    return "v1:" + base64.b64encode(nonce + sealed).decode()


def unseal(box: str, secret_key: bytes) -> str:
    version, _, data = box.partition(":")
    if version != "v1":
        raise SecretUnreadable("unknown secret format")
    raw = base64.b64decode(data)
    try:
        return AESGCM(_box_key(secret_key)).decrypt(raw[:12], raw[12:], b"whsec").decode()
    except InvalidTag:
        raise SecretUnreadable(
            "the webhook signing secret does not decrypt (SECRET_KEY changed since it was set): "
            "set the webhook again with `staple-collector site webhook`"
        ) from None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def validate_url(url: str, allow_private: bool) -> str:
    """A usable webhook URL, checked now as it will be checked at every delivery."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise outbound.Refused(f"the URL is longer than {MAX_URL} characters")
    _, host, port = outbound.check_url(url)
    outbound.resolve(host, port, allow_private)
    return url


def configure(client: redis.Redis, site_id: str, url: str, fmt: str, secret_key: bytes) -> str:
    """Set the site's webhook; returns the new signing secret (the only time it is shown)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    secret = new_secret()
    client.hset(
        keys.site(site_id),
        mapping={
            "webhook_url": url,
            "webhook_format": fmt,
            "webhook_secret": seal(secret, secret_key),
            "webhook_set_at": int(time.time()),
            "webhook_disabled": "",
        },
    )
    return secret


def remove(client: redis.Redis, site_id: str) -> None:
    client.hdel(keys.site(site_id), "webhook_url", "webhook_format", "webhook_secret",
                "webhook_set_at", "webhook_disabled")


def disable(client: redis.Redis, site_id: str, url: str, reason: str) -> None:
    """Disable the webhook, unless it was changed meanwhile (compare-and-set on the URL)."""
    key = keys.site(site_id)
    with redisconn.site_client(client, site_id).pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            current = pipe.hget(key, "webhook_url")
            if current is None or current.decode() != url:
                return
            pipe.multi()
            pipe.hset(key, "webhook_disabled", reason)
            pipe.execute()
        except redis.exceptions.WatchError:
            return


def from_hash(data: dict[bytes, bytes]) -> Webhook | None:
    url = data.get(b"webhook_url")
    if not url:
        return None
    disabled = (data.get(b"webhook_disabled") or b"").decode() or None
    set_at = data.get(b"webhook_set_at")
    return Webhook(
        url=url.decode(),
        format=(data.get(b"webhook_format") or b"json").decode(),
        secret_box=(data.get(b"webhook_secret") or b"").decode(),
        disabled=disabled,
        set_at=int(set_at) if set_at else None,
    )


def get(client: redis.Redis, site_id: str) -> Webhook | None:
    return from_hash(client.hgetall(keys.site(site_id)))


# --- signing -------------------------------------------------------------------------


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def headers(secret: str, msg_id: str, body: bytes, now: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if now is None else now
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


# --- payloads --------------------------------------------------------------------------


def generic_explanation(code: str | None) -> dict[str, str] | None:
    """Summary and advice for a diagnosis code without one report's particulars."""
    if not code or code not in diagnosis.CATALOGUE:
        return None
    summary_t, advice_t = diagnosis.CATALOGUE[code]
    params = _Generic()
    return {"code": code, "summary": summary_t.format_map(params), "advice": advice_t.format_map(params)}


class _Generic(dict):
    PHRASES = {
        "ago": "some time", "age": "too long", "url": "", "status": "an error", "error": "",
        "revoked_detail": "", "next_update": "see the host's reports", "this_update": "see the host's reports",
    }

    def __missing__(self, key: str) -> str:
        return self.PHRASES.get(key, "see the host's reports")


def host_url(public_url: str, site_id: str, host: str) -> str:
    return f"{public_url}/sites/{site_id}/hosts/{host}"


def payload(
    kind: str,
    incident: dict[str, Any],
    site: dict[str, str],
    public_url: str,
    at: int,
    explanation: dict[str, str] | None,
) -> dict[str, Any]:
    """The generic JSON payload. ``incident`` is shaped by ``alerts.shape_record``."""
    from collector.store import iso

    return {
        "type": kind,
        "timestamp": iso(at),
        "data": {
            "site": site,
            "host": incident["host"],
            "incident_id": incident["id"],
            "state": incident["state"],
            "severity": incident["severity"],
            "started_at": incident["started_at"],
            "resolved_at": incident["resolved_at"],
            "last_report_at": incident["last_report_at"],
            "reopened": incident["reopened"],
            "counts": incident["counts"],
            "distinct_clients": incident["distinct_clients"],
            "diagnosis": explanation,
            "url": host_url(public_url, site["id"], incident["host"]),
        },
    }


def _headline(body: dict[str, Any]) -> str:
    data = body["data"]
    title = TITLES.get(body["type"], body["type"])
    return f"{title} on {data['host']} ({data['severity'] or 'warning'})"


def _facts(body: dict[str, Any]) -> list[tuple[str, str]]:
    data = body["data"]
    counts = data["counts"]
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts["by_status"].items(), key=lambda kv: -kv[1]))
    facts = [
        ("Site", data["site"]["name"]),
        ("Started", data["started_at"] or "?"),
        ("Reports", f"{counts['total']} ({by_status})" if by_status else str(counts["total"])),
        ("Distinct clients", str(data["distinct_clients"])),
    ]
    if data["resolved_at"]:
        facts.append(("Resolved", data["resolved_at"]))
    return facts


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(body: dict[str, Any]) -> dict[str, Any]:
    data = body["data"]
    headline = _slack_escape(_headline(body))
    lines = [f"*{headline}*"]
    if data["diagnosis"]:
        lines.append(_slack_escape(data["diagnosis"]["summary"]))
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in _facts(body)]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {"type": "section", "fields": fields},
    ]
    if data["diagnosis"] and body["type"] != "incident.resolved":
        advice = "*What to do*\n" + _slack_escape(data["diagnosis"]["advice"])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": advice}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{data['url']}|Open the host>"}]})
    return {"text": headline, "blocks": blocks}


DISCORD_COLOURS = {"critical": 0xD0021B, "warning": 0xF5A623, "resolved": 0x2E7D32}


def _discord_escape(text: str) -> str:
    for ch in "\\*_~`|>#[]":
        text = text.replace(ch, "\\" + ch)
    return text


def discord(body: dict[str, Any]) -> dict[str, Any]:
    data = body["data"]
    colour = DISCORD_COLOURS["resolved" if body["type"] == "incident.resolved" else (data["severity"] or "warning")]
    description = _discord_escape(data["diagnosis"]["summary"]) if data["diagnosis"] else ""
    fields = [{"name": k, "value": _discord_escape(v)[:1000], "inline": True} for k, v in _facts(body)]
    if data["diagnosis"] and body["type"] != "incident.resolved":
        fields.append({"name": "What to do", "value": _discord_escape(data["diagnosis"]["advice"])[:1000],
                       "inline": False})
    return {
        "content": _discord_escape(_headline(body))[:2000],
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": _discord_escape(_headline(body))[:256],
            "url": data["url"],
            "description": description[:4000],
            "color": colour,
            "fields": fields,
            "timestamp": body["timestamp"],
        }],
    }


def render(fmt: str, body: dict[str, Any]) -> bytes:
    if fmt == "slack":
        out = slack(body)
    elif fmt == "discord":
        out = discord(body)
    else:
        out = body
    return json.dumps(out, separators=(",", ":")).encode()


def send(
    hook: Webhook,
    body: dict[str, Any],
    msg_id: str,
    secret_key: bytes,
    *,
    timeout: float,
    allow_private: bool,
) -> outbound.Result:
    """One attempt. Signed in every format (chat services ignore the extra headers)."""
    secret = unseal(hook.secret_box, secret_key)
    data = render(hook.format, body)
    return outbound.post(hook.url, data, headers(secret, msg_id, data), timeout=timeout,
                         allow_private=allow_private)
