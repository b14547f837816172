"""Fathom's webhook management API (fathom.md §2.5): create a webhook, delete it."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import msgspec

TRIGGERS = ("my_recordings", "shared_external_recordings", "my_shared_with_team_recordings", "shared_team_recordings")


class FathomApiError(Exception):
    """Fathom did not do what we asked; the message is safe to show (no key, no secret)."""


@dataclass(frozen=True, slots=True)
class RegisteredWebhook:
    id: str
    secret: str

    def __repr__(self) -> str:
        return f"RegisteredWebhook(id={self.id!r})"


class _Created(msgspec.Struct):
    id: str
    secret: str


def auth_headers(*, api_key: str | None = None, access_token: str | None = None) -> dict[str, str]:
    if api_key:
        return {"X-Api-Key": api_key}
    if access_token:
        return {"Authorization": f"Bearer {access_token}"}
    raise FathomApiError("the integration has no Fathom credentials")


async def create_webhook(
    http: httpx.AsyncClient, base_url: str, headers: dict[str, str], destination_url: str, triggered_for: list[str]
) -> RegisteredWebhook:
    body = {
        "destination_url": destination_url,
        "triggered_for": triggered_for,
        "include_transcript": True,
        "include_summary": True,
        "include_action_items": True,
        "include_crm_matches": True,
    }
    try:
        response = await http.post(base_url.rstrip("/") + "/webhooks", json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise FathomApiError(f"Fathom is unreachable ({type(exc).__name__})") from None
    if response.status_code not in (200, 201):
        raise FathomApiError(f"Fathom refused to create the webhook (HTTP {response.status_code})")
    try:
        created = msgspec.json.decode(response.content, type=_Created)
    except msgspec.DecodeError:
        raise FathomApiError("Fathom's answer has no webhook id and secret") from None
    return RegisteredWebhook(created.id, created.secret)


async def delete_webhook(http: httpx.AsyncClient, base_url: str, headers: dict[str, str], webhook_id: str) -> None:
    """Delete the webhook; a 404 means it is already gone, which is what we wanted."""
    try:
        response = await http.delete(f"{base_url.rstrip('/')}/webhooks/{webhook_id}", headers=headers)
    except httpx.HTTPError as exc:
        raise FathomApiError(f"Fathom is unreachable ({type(exc).__name__})") from None
    if response.status_code not in (200, 204, 404):
        raise FathomApiError(f"Fathom refused to delete the webhook (HTTP {response.status_code})")
