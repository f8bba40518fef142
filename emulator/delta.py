"""Folder delta: ``GET .../mailFolders/{id}/messages/delta`` with nextLink/deltaLink rounds.

Tokens are opaque keys into the mailbox's ``sync_states``; the round's settings (``$select``,
``$filter``, ``changeType``) travel in the state, not in the link, as in Graph. A token the mailbox
does not know (never issued, or forgotten through ``MailStore.invalidate_sync_state``) is a 410
``syncStateNotFound``. A message that left the folder comes back as ``@removed``: reason ``changed``
when it was moved (soft delete included), ``deleted`` when it is gone for good.
"""

from __future__ import annotations

import secrets

from emulator.errors import GraphError, bad_request
from emulator.mailbox import Folder, Mailbox
from emulator.odata import parse_filter, parse_int, parse_select
from emulator.routing import GraphRequest, GraphResponse

DEFAULT_PAGE_SIZE = 10
_CHANGE_TYPES = ("created", "updated", "deleted")


def delta(mailbox: Mailbox, folder: Folder, request: GraphRequest, link_base: str) -> GraphResponse:
    """One page of a delta round; ``link_base`` is the absolute URL of the delta endpoint as called."""
    page_size = _page_size(request)
    with mailbox.lock:
        state = _state(mailbox, folder, request, link_base)
        offset = state["offset"]
        ids = state["pending"][offset:offset + page_size]
        value = [item for item in (_item(folder, state, i, request.immutable_ids) for i in ids) if item]
        rv: dict = {"@odata.context": f"{link_base.rsplit('/v1.0/', 1)[0]}/v1.0/$metadata#Collection(message)",
                    "value": value}
        if offset + page_size < len(state["pending"]):
            token = _store(mailbox, {**state, "offset": offset + page_size})
            rv["@odata.nextLink"] = f"{link_base}?$skiptoken={token}"
        else:
            token = _store(mailbox, {**state, "since": state["final_seq"], "pending": None, "offset": 0})
            rv["@odata.deltaLink"] = f"{link_base}?$deltatoken={token}"
    headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if request.prefer("odata.maxpagesize") else {}
    return GraphResponse(200, rv, headers)


def _page_size(request: GraphRequest) -> int:
    preferred = request.prefer("odata.maxpagesize")
    if preferred and preferred.isdigit() and int(preferred) > 0:
        return min(int(preferred), 1000)
    return parse_int(request.args, "$top", DEFAULT_PAGE_SIZE, 1, 1000)


def _state(mailbox: Mailbox, folder: Folder, request: GraphRequest, link_base: str) -> dict:
    """The round this request continues, or a new initial round."""
    token = request.args.get("$skiptoken") or request.args.get("$deltatoken")
    if token is None or token == "":
        return _initial(mailbox, folder, request)
    state = mailbox.sync_states.get(token)
    if state is None or state["folder_id"] != folder.id:
        raise GraphError(410, "syncStateNotFound", "The sync state generation is not found.",
                         {"Location": f"{link_base}?$deltatoken="})
    if state["pending"] is None:
        state = {**state, "pending": folder.changed_since(state["since"]), "final_seq": mailbox.seq}
    return state


def _initial(mailbox: Mailbox, folder: Folder, request: GraphRequest) -> dict:
    clauses = parse_filter(request.args.get("$filter"))
    if any(c.name != "receivedDateTime" for c in clauses):
        raise bad_request("Only receivedDateTime ge/gt filters are supported in a delta query.",
                          "ErrorInvalidUrlQueryFilter")
    change_type = request.args.get("changeType")
    if change_type is not None and change_type not in _CHANGE_TYPES:
        raise bad_request(f"Invalid changeType '{change_type}'.", "ErrorInvalidUrlQuery")
    pending = [m.immutable_id for m in folder.members.values() if all(c.matches(m) for c in clauses)]
    return {
        "folder_id": folder.id, "select": parse_select(request.args.get("$select")), "filter": clauses,
        "change_type": change_type, "since": -1, "final_seq": mailbox.seq, "pending": pending, "offset": 0,
    }


def _item(folder: Folder, state: dict, immutable_id: str, immutable: bool) -> dict | None:
    message = folder.members.get(immutable_id)
    initial = state["since"] < 0
    if message is not None:
        kind = "created" if initial or message.entered_seq > state["since"] else "updated"
        if state["change_type"] not in (None, kind) or not all(c.matches(message) for c in state["filter"]):
            return None
        return {"@odata.type": "#microsoft.graph.message",
                **message.render(immutable=immutable, select=state["select"])}
    departed = folder.departed.get(immutable_id)
    if departed is None or initial or state["change_type"] not in (None, "deleted"):
        return None
    rest_id, reason = departed
    return {"@odata.type": "#microsoft.graph.message", "id": immutable_id if immutable else rest_id,
            "@removed": {"reason": reason}}


def _store(mailbox: Mailbox, state: dict) -> str:
    token = secrets.token_urlsafe(32)
    mailbox.sync_states[token] = state
    return token

