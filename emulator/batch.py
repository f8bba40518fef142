"""JSON batching: ``POST /v1.0/$batch`` with up to 20 requests.

The outer answer is 200 whenever the batch itself parses; each sub-request gets its own status,
headers and body, and goes through the same dispatch (throttling, faults, 429 with its own
``Retry-After``) as a plain call. Like Graph for Outlook, at most four sub-requests run at once,
so they count against the mailbox's concurrency limit alongside the client's other calls; a batch
using ``dependsOn`` runs one request at a time, and a request whose dependency failed gets 424.
Responses come back in completion order, not request order. A body that is not JSON (an attachment's
``$value``) comes back base64-encoded, as Graph's batching does
(https://learn.microsoft.com/graph/json-batching). A JSON sub-response is typed as a plain response
is (``odata.metadata=minimal``, ``OData-Version: 4.0``); an item with an absolute URL gets its own 400,
and the rest of the batch runs (Learn asks for relative URLs and documents nothing more; answering per
item is what Graph does with any other bad item).
"""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from werkzeug.datastructures import Headers, MultiDict

from emulator.errors import bad_request, error_body
from emulator.routing import JSON_TYPE, NO_SCOPE, GraphRequest, GraphResponse

if TYPE_CHECKING:
    from emulator.graph import Graph

MAX_REQUESTS = 20
PARALLEL = 4


def run_batch(graph: Graph, request: GraphRequest) -> GraphResponse:
    items = request.json().get("requests")
    if not isinstance(items, list) or not items:
        raise bad_request("Invalid batch payload format: 'requests' must be a non-empty array.", "BadRequest")
    if len(items) > MAX_REQUESTS:
        raise bad_request(f"Number of batch requests ({len(items)}) exceeds the limit of {MAX_REQUESTS}.")
    subs = {item.get("id"): _sub_request(request, item) for item in _checked(items)}
    depends = {item["id"]: list(item.get("dependsOn") or []) for item in items}
    if any(depends.values()):
        responses = _sequential(graph, subs, depends, _ordered(depends))
    else:
        responses = _parallel(graph, subs)
    return GraphResponse(200, {"responses": responses})


def _checked(items: list) -> list[dict]:
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("id", "method", "url")):
            raise bad_request("Each batch request needs string 'id', 'method' and 'url' properties.")
        if item["id"] in seen:
            raise bad_request(f"Batch request ids must be unique; '{item['id']}' is repeated.")
        seen.add(item["id"])
        if "body" in item and not _header(item, "Content-Type"):
            raise bad_request(f"Batch request '{item['id']}' has a body but no Content-Type header.")
    for item in items:
        depends = item.get("dependsOn") or []
        if not isinstance(depends, list) or any(d not in seen for d in depends):
            raise bad_request(f"Batch request '{item['id']}' depends on an unknown request id.")
    return items


def _ordered(depends: dict[str, list[str]]) -> list[str]:
    """Ids in an order that runs every dependency first (request order where free); 400 on a cycle."""
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(depends):
        ready = [i for i in depends if i not in placed and all(d in placed for d in depends[i])]
        if not ready:
            raise bad_request("Batch request dependencies form a cycle.")
        order.append(ready[0])
        placed.add(ready[0])
    return order


def _header(item: dict, name: str) -> str | None:
    headers = item.get("headers") or {}
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _sub_request(outer: GraphRequest, item: dict) -> GraphRequest:
    url = urlsplit(item["url"] if item["url"].startswith("/") else "/" + item["url"])
    body = item.get("body")
    raw = b"" if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return GraphRequest(  # an absolute URL keeps its scheme in the path, for _run to refuse
        method=item["method"].upper(), path=item["url"] if "://" in item["url"] else unquote(url.path), body=raw,
        principal=outer.principal,
        args=MultiDict(parse_qsl(url.query, keep_blank_values=True)),
        headers=Headers(list((item.get("headers") or {}).items())),
        request_id=str(uuid.uuid4()), client_request_id=outer.client_request_id,
    )


def _run(graph: Graph, request_id: str, sub: GraphRequest) -> dict:
    if sub.path.strip("/").lower() == "$batch":
        rv = graph.dispatch_error(sub, bad_request("A batch request cannot contain another batch."))
    elif "://" in sub.path:
        rv = graph.dispatch_error(sub, bad_request(f"Batch request urls must be relative: '{sub.path}'."))
    else:
        rv = graph.dispatch(sub)
    return _response(request_id, rv)


def _parallel(graph: Graph, subs: dict[str, GraphRequest]) -> list[dict]:
    if len(subs) == 1:
        return [_run(graph, *next(iter(subs.items())))]
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(subs)), thread_name_prefix="graph-batch") as pool:
        futures = [pool.submit(_run, graph, request_id, sub) for request_id, sub in subs.items()]
        return [future.result() for future in as_completed(futures)]


def _sequential(graph: Graph, subs: dict[str, GraphRequest], depends: dict[str, list[str]],
                order: list[str]) -> list[dict]:
    statuses: dict[str, int] = {}
    responses = []
    for request_id in order:
        if any(statuses[d] >= 400 for d in depends[request_id]):
            sub = subs[request_id]
            body = error_body("FailedDependency", "The request failed because a request it depends on failed.",
                              date=graph.emulator.clock.now(), request_id=sub.request_id,
                              client_request_id=sub.client_request_id)
            response = _response(request_id, GraphResponse(424, body))
        else:
            response = _run(graph, request_id, subs[request_id])
        statuses[request_id] = response["status"]
        responses.append(response)
    return responses


def _response(request_id: str, rv: GraphResponse) -> dict:
    headers = dict(rv.headers)
    response = {"id": request_id, "status": rv.status, "headers": headers}
    if isinstance(rv.body, bytes):
        response["body"] = base64.b64encode(rv.body).decode()
    elif rv.body is not None:
        headers.update({"Content-Type": JSON_TYPE, "OData-Version": "4.0"})
        response["body"] = rv.body
    return response


ROUTES = [("POST", "/$batch", run_batch, NO_SCOPE)]
