"""Reading mail: the profile, message lists and gets, folders and folder delta.

Handlers take ``(graph, request, mailbox)``; :mod:`emulator.graph` has already resolved and
authorised the mailbox and taken a throttling slot. A message get or list may ``$expand`` its
attachments, which takes Mail.Read or Mail.ReadWrite as reading them does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator import delta
from emulator.errors import access_denied, bad_request
from emulator.mailbox import Folder, Mailbox
from emulator.message import Message
from emulator.odata import MAX_TOP, Expand, parse_expand, parse_filter, parse_int, parse_orderby, parse_select
from emulator.routing import READ_ATTACHMENTS, READ_MAIL, READ_PROFILE, GraphRequest, GraphResponse

if TYPE_CHECKING:
    from emulator.graph import Graph

DEFAULT_TOP = 10


def profile(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, {"$select"})
    given, _, surname = mailbox.display_name.partition(" ")
    user = {
        "businessPhones": [], "displayName": mailbox.display_name, "givenName": given or None,
        "jobTitle": None, "mail": mailbox.email, "mobilePhone": None, "officeLocation": None,
        "preferredLanguage": None, "surname": surname or None, "userPrincipalName": mailbox.email,
        "id": mailbox.user_id,
    }
    if "$select" in request.args:
        names = {name.lower(): name for name in user}
        wanted = [n.strip() for n in request.args["$select"].split(",")]
        unknown = [n for n in wanted if n.lower() not in names]
        if unknown:
            raise bad_request(f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.user'.",
                              "RequestBroker--ParseUri")
        user = {names[n.lower()]: user[names[n.lower()]] for n in ["id", *wanted]}
    return GraphResponse(200, {"@odata.context": f"{graph.root}/$metadata#users/$entity", **user})


def list_messages(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    return _list(graph, request, mailbox, None)


def list_folder_messages(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    return _list(graph, request, mailbox, mailbox.folder(request.params["folder"]))


def get_message(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, {"$select", "$expand"})
    select, expand = parse_select(request.args.get("$select")), _expansion(request)
    with mailbox.lock:
        if "folder" in request.params:
            mailbox.folder(request.params["folder"])
        body = _render(mailbox.get(request.params["id"]), request, select, expand)
    return GraphResponse(200, {"@odata.context": f"{graph.root}/$metadata#users('{mailbox.user_id}')/messages/$entity",
                               **body})


def list_folders(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, {"$top", "$select"})
    with mailbox.lock:
        value = [_folder(mailbox, f) for f in mailbox.folders.values()]
    return GraphResponse(200, {"@odata.context": f"{graph.root}/$metadata#users('{mailbox.user_id}')/mailFolders",
                               "value": value})


def get_folder(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, {"$select"})
    with mailbox.lock:
        folder = _folder(mailbox, mailbox.folder(request.params["folder"]))
    context = f"{graph.root}/$metadata#users('{mailbox.user_id}')/mailFolders/$entity"
    return GraphResponse(200, {"@odata.context": context, **folder})


def folder_delta(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    check_options(request, {"$select", "$filter", "$top", "$orderby", "$skiptoken", "$deltatoken"})
    folder = mailbox.folder(request.params["folder"])
    return delta.delta(mailbox, folder, request, f"{graph.root}{request.path}")


def messages_delta(graph: Graph, request: GraphRequest, mailbox: Mailbox) -> GraphResponse:
    """Graph tracks message changes per folder only."""
    raise bad_request("Change tracking is not supported against 'microsoft.graph.message' without a folder; "
                      "use /mailFolders/{id}/messages/delta.", "ErrorInvalidRequest")


def check_options(request: GraphRequest, allowed: set[str]) -> None:
    """400 for system query options this endpoint (or the emulator) does not support."""
    for name in request.args:
        if name.startswith("$") and name not in allowed:
            raise bad_request(f"The query parameter '{name}' is not supported.", "ErrorInvalidUrlQuery")


def _list(graph: Graph, request: GraphRequest, mailbox: Mailbox, folder: Folder | None) -> GraphResponse:
    check_options(request, {"$select", "$expand", "$filter", "$top", "$skip", "$orderby"})
    select, expand = parse_select(request.args.get("$select")), _expansion(request)
    clauses = parse_filter(request.args.get("$filter"))
    newest_first = parse_orderby(request.args.get("$orderby"), clauses)
    top = parse_int(request.args, "$top", DEFAULT_TOP, 1, MAX_TOP)
    skip = parse_int(request.args, "$skip", 0, 0, 10**9)
    by_id = next((c.value for c in clauses if c.name == "internetMessageId"), None)
    with mailbox.lock:
        candidates = mailbox.by_internet_id(by_id) if by_id is not None else mailbox.messages(folder)
        found = [m for m in candidates
                 if (folder is None or m.folder_id == folder.id) and all(c.matches(m) for c in clauses)]
        found.sort(key=lambda m: m.received or m.created, reverse=newest_first)
        value = [_render(m, request, select, expand) for m in found[skip:skip + top]]
    rv = {"@odata.context": f"{graph.root}/$metadata#users('{mailbox.user_id}')/messages", "value": value}
    if skip + top < len(found):
        rv["@odata.nextLink"] = graph.link(request, **{"$top": top, "$skip": skip + top})
    return GraphResponse(200, rv)


def _expansion(request: GraphRequest) -> Expand | None:
    expand = parse_expand(request.args.get("$expand"))
    if expand is not None and not request.principal.scopes & READ_ATTACHMENTS:
        raise access_denied()
    return expand


def _render(message: Message, request: GraphRequest, select: tuple[str, ...] | None,
            expand: Expand | None) -> dict:
    rv = message.render(immutable=request.immutable_ids, select=select)
    if expand is not None:
        rv["attachments"] = [a.render(expand.select) for a in message.attachments]
    return rv


def _folder(mailbox: Mailbox, folder: Folder) -> dict:
    """A mailFolder's v1.0 properties (``sizeInBytes`` is beta only,
    https://learn.microsoft.com/graph/api/resources/mailfolder)."""
    members = folder.members.values()
    return {
        "id": folder.id, "displayName": folder.display_name, "parentFolderId": mailbox.root_folder_id,
        "childFolderCount": 0, "unreadItemCount": sum(1 for m in members if not m.is_read),
        "totalItemCount": len(folder.members), "isHidden": False,
    }


ROUTES = [
    ("GET", "/", profile, READ_PROFILE),
    ("GET", "/messages/delta", messages_delta, READ_MAIL),
    ("GET", "/messages", list_messages, READ_MAIL),
    ("GET", "/messages/{id}", get_message, READ_MAIL),
    ("GET", "/mailFolders", list_folders, READ_MAIL),
    ("GET", "/mailFolders/{folder}", get_folder, READ_MAIL),
    ("GET", "/mailFolders/{folder}/messages/delta", folder_delta, READ_MAIL),
    ("GET", "/mailFolders/{folder}/messages", list_folder_messages, READ_MAIL),
    ("GET", "/mailFolders/{folder}/messages/{id}", get_message, READ_MAIL),
]
