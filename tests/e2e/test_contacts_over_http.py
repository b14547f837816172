"""Contacts and customers on the running stack: a Fathom webhook's external invitees become
contacts of its customer, read over the linker's HTTP with the message and its link."""

import json
import uuid

from .conftest import Stack, eventually, fathom_meeting, signed_headers

INTERNAL = {"marisol.etxeberria@quillmere-systems.com", "devon@quillmere-systems.com"}


async def test_a_webhooks_people_are_contacts_of_its_customer(stack: Stack) -> None:
    integration_id, secret = await stack.fathom_integration()
    body = json.dumps(fathom_meeting(720001)).encode()
    r = await stack.client("gateway").post(
        f"/v1/webhooks/fathom/{integration_id}", content=body, headers=signed_headers(secret, body, uuid.uuid4().hex)
    )
    assert r.status_code == 202, r.text
    linker = stack.client("linker")

    async def contacts() -> list[dict] | None:
        answer = await linker.get("/v1/contacts", params={"workspace_id": "acme"})
        assert answer.status_code == 200, answer.text
        return answer.json()["items"] or None

    items = await eventually(contacts)
    emails = {c["email"] for c in items}
    assert "k.ashworth-lindqvist@tallowbrook-capital.com" in emails
    assert not emails & INTERNAL  # internal people are kept apart
    [kwabena] = [c for c in items if c["email"] == "k.ashworth-lindqvist@tallowbrook-capital.com"]
    assert (kwabena["name"], kwabena["call_count"]) == ("Kwabena Ashworth-Lindqvist", 1)
    assert kwabena["customer"]["domain"] == "tallowbrook-capital.com"

    customers = (await linker.get("/v1/customers", params={"workspace_id": "acme", "q": "tallowbrook"})).json()
    [customer] = customers["items"]
    assert (customer["id"], customer["message_count"]) == (kwabena["customer"]["id"], 1)
    detail = (await linker.get(f"/v1/customers/{customer['id']}")).json()
    assert kwabena["id"] in [c["id"] for c in detail["contacts"]]
    [message] = detail["messages"]
    assert (message["source"], message["external_id"]) == ("fathom", "720001")
    assert message["link"]["url"] == "https://fathom.video/share/e2e-720001"

    by_email = await linker.get(
        "/v1/contacts", params={"workspace_id": "acme", "email": "K.Ashworth-Lindqvist@tallowbrook-capital.com"}
    )
    assert [c["id"] for c in by_email.json()["items"]] == [kwabena["id"]]
