"""A small Microsoft Graph client for one mailbox, built with its collaborators passed in.

Every request carries ``Prefer: IdType="ImmutableId"`` (Graph applies it per request only), at
most :data:`MAILBOX_CONCURRENCY` requests of one mailbox are in flight at a time (Outlook's
per-app-and-mailbox limit: in this process by :class:`MailboxLimiter`, over all processes sharing the
store by :class:`app.core.mailbox_slots.MailboxSlots`), and a 401 is answered by one forced token
refresh and one retry.
Failures become :class:`GraphError` subclasses the worker knows how to treat.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from app.core.mailbox_slots import HeldOff, MailboxSlots, SlotsBusy
from app.microsoft.failures import Throttled, error_from, retry_after_seconds

MAILBOX_CONCURRENCY = 4
BATCH_LIMIT = 20
IMMUTABLE_IDS = 'IdType="ImmutableId"'
DEFAULT_TIMEOUT = 30.0
# What the service reads of a message. internetMessageHeaders only come back when $select-ed; they
# carry In-Reply-To and References, which the threading rules need.
MESSAGE_SELECT = ",".join((
    "id", "internetMessageId", "conversationId", "conversationIndex", "isDraft", "subject", "from",
    "toRecipients", "ccRecipients", "sentDateTime", "receivedDateTime", "bodyPreview", "body",
    "parentFolderId", "changeKey", "internetMessageHeaders", "hasAttachments",
))

# Attachments come with the message in the same $batch, described but without their bytes (a file's
# contentBytes would make every fetch carry them, for mail that turns out to be unrelated).
# https://learn.microsoft.com/graph/api/resources/attachment
ATTACHMENTS_EXPAND = "attachments($select=id,name,contentType,size,isInline)"
CONTENT_CHUNK_BYTES = 256 * 1024
# Files from this size on go to a draft through an upload session; smaller ones in one POST.
# https://learn.microsoft.com/graph/outlook-large-attachments
UPLOAD_SESSION_BYTES = 3 * 1024 * 1024
UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024

_limiters: dict[str, "MailboxLimiter"] = {}
_limiters_lock = threading.Lock()
_blocked_until: dict[str, float] = {}  # mailbox → monotonic time its Retry-After runs out


class MailboxLimiter:
    """At most :data:`MAILBOX_CONCURRENCY` Graph requests in flight for one mailbox in this process.

    A ``$batch`` of n requests takes ``min(n, 4)`` slots at once, since Graph runs its sub-requests
    four at a time against the mailbox; taking them together means two batches never deadlock.
    """

    def __init__(self, slots: int = MAILBOX_CONCURRENCY) -> None:
        self._free = slots
        self._slots = slots
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int = 1) -> Iterator[None]:
        n = max(1, min(n, self._slots))
        with self._condition:
            self._condition.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._condition:
                self._free += n
                self._condition.notify_all()


def mailbox_limiter(mailbox: str) -> MailboxLimiter:
    """The process-wide limiter of in-flight requests for one mailbox."""
    with _limiters_lock:
        if mailbox not in _limiters:
            _limiters[mailbox] = MailboxLimiter()
        return _limiters[mailbox]


class GraphClient:
    """Graph calls on behalf of one connected mailbox.

    :param base_url: ``{GRAPH_ENDPOINT}/v1.0``
    :param token_provider: returns an access token; called with ``force_refresh=True`` after a 401
    :param mailbox: key for the concurrency limiter (the connection id)
    :param observe: optional ``(operation, status)`` callback for metrics
    :param shared_slots: the store's slots, when other processes call Graph for the same mailboxes
    """

    def __init__(self, base_url: str, token_provider: Callable[..., str], session: requests.Session, *,
                 mailbox: str, timeout: float = DEFAULT_TIMEOUT,
                 observe: Callable[[str, int], None] | None = None,
                 shared_slots: MailboxSlots | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token_provider = token_provider
        self._session = session
        self._mailbox = mailbox
        self._limiter = mailbox_limiter(mailbox)
        self._timeout = timeout
        self._observe = observe or (lambda operation, status: None)
        self._shared_slots = shared_slots

    # -- transport -------------------------------------------------------------------------

    def _hold_off(self, retry_after: float | None) -> None:
        """Graph throttles per app and mailbox: after a Retry-After, nothing goes to this mailbox
        until it has passed (an early retry only earns another 429)."""
        if retry_after:
            until = time.monotonic() + retry_after
            _blocked_until[self._mailbox] = max(_blocked_until.get(self._mailbox, 0.0), until)
            if self._shared_slots is not None:  # and every other process's
                self._shared_slots.hold_off(self._mailbox, retry_after)

    def _check_not_blocked(self, operation: str) -> None:
        remaining = _blocked_until.get(self._mailbox, 0.0) - time.monotonic()
        if remaining > 0:
            raise Throttled(429, "held_off", f"{operation} waits for the mailbox's Retry-After", remaining)

    def _send(self, operation: str, method: str, url: str, token: str | None, **kwargs: Any) -> requests.Response:
        """One request to the mailbox, within its limits; ``token`` None for a URL that carries its
        own authorization (an upload session's)."""
        self._check_not_blocked(operation)
        headers = {"Prefer": IMMUTABLE_IDS, **({"Authorization": f"Bearer {token}"} if token else {}),
                   **kwargs.pop("headers", {})}
        slots = kwargs.pop("slots", 1)
        try:
            with self._limiter.hold(slots), self._hold_shared(slots):
                rv = self._session.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
        except requests.RequestException as e:
            self._observe(operation, 0)
            raise Throttled(0, "network_error", type(e).__name__, None) from None
        except SlotsBusy as e:  # other processes kept the mailbox's slots: a transient failure, retried
            raise Throttled(0, "mailbox_busy", f"{operation}: {e}", None) from None
        except HeldOff as e:  # another process got the Retry-After: wait it out too
            raise Throttled(429, "held_off", f"{operation}: {e}", e.remaining) from None
        self._observe(operation, rv.status_code)
        if rv.status_code in (429, 503):
            self._hold_off(retry_after_seconds(rv.headers))
        return rv

    def _hold_shared(self, slots: int) -> contextlib.AbstractContextManager[None]:
        if self._shared_slots is None:
            return contextlib.nullcontext()
        return self._shared_slots.hold(self._mailbox, slots, timeout=self._timeout)

    def request(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        """Call Graph and return the decoded JSON body (None when empty); raise on error."""
        return _json(self._call(operation, method, path, **kwargs))

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call Graph (again with a fresh token after a 401); the answer, or its error raised."""
        url = path if path.startswith("https://") or path.startswith("http://") else f"{self.base_url}{path}"
        rv = self._send(operation, method, url, self._token_provider(), **dict(kwargs))
        if rv.status_code == 401:
            rv.close()
            rv = self._send(operation, method, url, self._token_provider(force_refresh=True), **dict(kwargs))
        if rv.status_code >= 400:
            raise error_from(rv.status_code, _json(rv), rv.headers)
        return rv

    # -- messages --------------------------------------------------------------------------

    def get_messages(self, ids: list[str], select: str, expand: str | None = None) -> dict[str, tuple[int, Any, Any]]:
        """Fetch up to 20 messages in one ``$batch``: ``{id: (status, body, headers)}``."""
        query = f"?$select={select}" + (f"&$expand={expand}" if expand else "")
        return self._batch("batch_get_messages", [f"/me/messages/{message_id}{query}" for message_id in ids], ids)

    def get_attachments(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, Any, Any]]:
        """Up to 20 attachments, each ``(message id, attachment id)``, with their bytes (a file's
        ``contentBytes``, base64), in one ``$batch``: ``{pair: (status, body, headers)}``."""
        urls = [f"/me/messages/{message_id}/attachments/{attachment_id}" for message_id, attachment_id in pairs]
        return self._batch("batch_get_attachments", urls, pairs)

    def get_attachment_content(self, message_id: str, attachment_id: str, max_bytes: int) -> bytes | None:
        """A file attachment's raw bytes (``/$value``), read as they arrive; None once they pass
        ``max_bytes``, so a file larger than its description said costs no more than that."""
        path = f"/me/messages/{message_id}/attachments/{attachment_id}/$value"
        rv = self._call("get_attachment_content", "GET", path, stream=True)
        content = bytearray()
        try:
            with rv:
                for chunk in rv.iter_content(CONTENT_CHUNK_BYTES):
                    content += chunk
                    if len(content) > max_bytes:
                        return None
        except requests.RequestException as e:  # the connection broke mid-file: a transient failure
            raise Throttled(0, "network_error", type(e).__name__, None) from None
        return bytes(content)

    def _batch(self, operation: str, urls: list[str], keys: list[Any]) -> dict[Any, tuple[int, Any, Any]]:
        """GET ``urls`` in one ``$batch`` (at most 20); each answer under the key of its URL."""
        if len(urls) > BATCH_LIMIT:
            raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests, got {len(urls)}")
        requests_ = [{"id": str(index), "method": "GET", "url": url, "headers": {"Prefer": IMMUTABLE_IDS}}
                     for index, url in enumerate(urls)]
        body = self.request(operation, "POST", "/$batch", json={"requests": requests_}, slots=len(urls))
        results = {}
        for item in body.get("responses", []):
            status, headers = int(item["status"]), item.get("headers") or {}
            if status in (429, 503):
                self._hold_off(retry_after_seconds(headers))
            results[keys[int(item["id"])]] = (status, item.get("body"), headers)
        return results

    def get_message(self, message_id: str, select: str) -> dict:
        return self.request("get_message", "GET", f"/me/messages/{message_id}", params={"$select": select})

    def list_attachments(self, message_id: str, select: str) -> list[dict]:
        """A message's attachments (``$select``-ed: no bytes)."""
        body = self.request("list_attachments", "GET", f"/me/messages/{message_id}/attachments",
                            params={"$select": select})
        return body.get("value", []) if isinstance(body, dict) else []

    def add_attachment(self, message_id: str, attachment: dict[str, Any]) -> dict:
        """Attach a file of under 3 MB to a draft in one request
        (https://learn.microsoft.com/graph/api/message-post-attachments)."""
        return self.request("add_attachment", "POST", f"/me/messages/{message_id}/attachments", json=attachment)

    def upload_attachment(self, message_id: str, item: dict[str, Any], content: bytes) -> None:
        """Attach a large file to a draft through an upload session: ranges of at most
        :data:`UPLOAD_CHUNK_BYTES`, in order, to the session's own URL, which carries its own
        authorization and refuses a bearer token
        (https://learn.microsoft.com/graph/outlook-large-attachments)."""
        session = self.request("create_upload_session", "POST",
                               f"/me/messages/{message_id}/attachments/createUploadSession",
                               json={"AttachmentItem": {**item, "attachmentType": "file", "size": len(content)}})
        url = session["uploadUrl"]
        for start in range(0, len(content), UPLOAD_CHUNK_BYTES):
            chunk = content[start:start + UPLOAD_CHUNK_BYTES]
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                       "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(content)}"}
            rv = self._send("upload_attachment", "PUT", url, None, data=chunk, headers=headers)
            if rv.status_code >= 400:
                raise error_from(rv.status_code, _json(rv), rv.headers)

    def create_draft(self, message: dict[str, Any]) -> dict:
        return self.request("create_draft", "POST", "/me/messages", json=message)

    def create_reply(self, message_id: str) -> dict:
        """A reply draft; Exchange sets In-Reply-To and References from the original."""
        return self.request("create_reply", "POST", f"/me/messages/{message_id}/createReply", json={})

    def update_draft(self, message_id: str, changes: dict[str, Any]) -> dict:
        return self.request("update_draft", "PATCH", f"/me/messages/{message_id}", json=changes)

    def send_draft(self, message_id: str) -> None:
        self.request("send_draft", "POST", f"/me/messages/{message_id}/send", headers={"Content-Length": "0"})

    def delete_draft(self, message_id: str) -> None:
        """Delete one of the service's own unsent drafts (the only mailbox item it ever deletes)."""
        self.request("delete_draft", "DELETE", f"/me/messages/{message_id}")

    def find_messages(self, filter_: str, select: str, *, top: int = 50) -> Iterator[dict]:
        """Messages of the mailbox matching an OData ``$filter``, following ``@odata.nextLink``."""
        page = self.request("list_messages", "GET", "/me/messages",
                            params={"$filter": filter_, "$select": select, "$top": str(top)})
        yield from self._pages("list_messages", page)

    def delta_pages(self, folder: str, delta_link: str | None, select: str,
                    received_since: str | None = None) -> Iterator[dict]:
        """Pages of a folder's delta query; the last page carries ``@odata.deltaLink``."""
        if delta_link:
            page = self.request("delta", "GET", delta_link)
        else:
            params = {"$select": select}
            if received_since:
                params["$filter"] = f"receivedDateTime ge {received_since}"
            page = self.request("delta", "GET", f"/me/mailFolders/{folder}/messages/delta", params=params)
        yield page
        while "@odata.nextLink" in page:
            page = self.request("delta", "GET", page["@odata.nextLink"])
            yield page

    def _pages(self, operation: str, page: dict) -> Iterator[dict]:
        yield from page.get("value", [])
        while "@odata.nextLink" in page:
            page = self.request(operation, "GET", page["@odata.nextLink"])
            yield from page.get("value", [])

    # -- subscriptions -----------------------------------------------------------------------

    def create_subscription(self, body: dict[str, Any]) -> dict:
        return self.request("create_subscription", "POST", "/subscriptions", json=body)

    def renew_subscription(self, subscription_id: str, expiration: str) -> dict:
        """PATCH a new expiry; this also reauthorizes the subscription."""
        return self.request("renew_subscription", "PATCH", f"/subscriptions/{subscription_id}",
                            json={"expirationDateTime": expiration})

    def delete_subscription(self, subscription_id: str) -> None:
        self.request("delete_subscription", "DELETE", f"/subscriptions/{subscription_id}")


def _json(rv: requests.Response) -> Any:
    if not rv.content:
        return None
    try:
        return rv.json()
    except ValueError:
        return {"error": {"code": f"http_{rv.status_code}", "message": rv.text[:200]}}
