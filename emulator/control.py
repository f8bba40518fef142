"""``/_emulator``: a JSON API and one HTML page to watch and steer the emulator.

Every action delegates to an :class:`~emulator.server.Emulator` facade method. Actions take a
JSON body or an HTML form; a form submission is answered with a redirect back to the page
(post/redirect/get, back to the page the form names in ``next``), JSON with JSON. Errors are
``{"error": {"code", "message"}}``: 400 for bad input, 404 for unknown ids.

A state-changing request a browser sends from another origin is refused (403), and so is a form
without the page's ``csrf_token``: a page on the web must not steer a developer's emulator. Scripts
and tests post JSON and send no ``Origin``, so they need no token.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for

from .control_page import PAGE_SIZE, Names, fault_lines, reply_fields, reset_faults, short_id, tenants_with_mailboxes
from .errors import GraphError

if TYPE_CHECKING:
    from .server import Emulator

RECENT = 50
TRUE_WORDS = ("1", "true", "on", "yes")
FALSE_WORDS = ("0", "false", "off", "no")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PREFIX = "/_emulator"
#: Fields every page form sends that are about the form, not the action.
FORM_ONLY = ("csrf_token", "next")


def create_control_blueprint(emulator: "Emulator") -> Blueprint:
    bp = Blueprint("control", __name__, url_prefix=PREFIX)
    bp.add_app_template_filter(short_id)
    _register_errors(bp)
    _protect(bp, secrets.token_urlsafe(24))

    @bp.get("/")
    def page():
        recent = [_request_json(r) for r in emulator.requests()[-RECENT:]][::-1]
        return _render("control.html", emulator, state=_state(emulator), recent=recent,
                       tenants=tenants_with_mailboxes(emulator))

    @bp.get("/mailboxes/<user_id>")
    def mailbox(user_id: str):
        user = emulator.directory.user(user_id)
        folder = request.args.get("folder", "inbox")
        page_number = max(1, request.args.get("page", 1, type=int))
        total, messages = emulator.mail.message_page(user_id, folder, (page_number - 1) * PAGE_SIZE, PAGE_SIZE)
        return _render("control_mailbox.html", emulator, user=user, folder=folder,
                       folders=emulator.mail.folder_counts(user_id), messages=messages, total=total,
                       first=(page_number - 1) * PAGE_SIZE + 1, page_number=page_number, page_size=PAGE_SIZE,
                       users=emulator.directory.users())

    @bp.get("/mailboxes/<user_id>/messages/<message_id>/reply")
    def reply_form(user_id: str, message_id: str):
        user = emulator.directory.user(user_id)
        message = emulator.mail.get(user_id, message_id)
        return _render("control_reply.html", emulator, user=user, message=message,
                       fields=reply_fields(message, user.email), users=emulator.directory.users())

    @bp.get("/state")
    def state():
        return jsonify(_state(emulator))

    @bp.post("/tenants")
    def add_tenant():
        data = _payload()
        tenant_id = emulator.add_tenant(
            _text(data, "name"), tenant_id=data.get("tenant_id") or None,
            user_consent_allowed=_flag(data, "user_consent_allowed", True),
            admin_consent_workflow=_flag(data, "admin_consent_workflow", True))
        return _reply({"id": tenant_id}, 201, f"Tenant {tenant_id} added.")

    @bp.post("/users")
    def add_user():
        data = _payload()
        user_id = emulator.add_user(_text(data, "tenant_id"), _text(data, "email"),
                                    display_name=data.get("display_name") or None, admin=_flag(data, "admin", False),
                                    user_id=data.get("user_id") or None)
        return _reply({"id": user_id}, 201, f"User {user_id} added.")

    @bp.post("/apps")
    def register_app():
        data = _payload()
        client_id, secret = emulator.register_app(data.get("client_id") or None, data.get("client_secret") or None,
                                                  _list(data.get("redirect_uris")))
        return _reply({"client_id": client_id, "client_secret": secret}, 201, f"App {client_id} registered.")

    @bp.post("/messages")
    def deliver():
        data = _payload()
        message = emulator.deliver_email(
            _text(data, "user_id"), subject=data.get("subject", ""), body=data.get("body", ""),
            sender=_text(data, "from"), to=_list(data.get("to")), cc=_list(data.get("cc")),
            in_reply_to=data.get("in_reply_to") or None, references=_list(data.get("references")),
            conversation_of=data.get("conversation_of") or None,
            internet_message_id=data.get("internet_message_id") or None, attachments=_attachments(data))
        return _reply(message, 201, f"Delivered {message.get('internetMessageId', 'a message')}.")

    @bp.post("/messages/move")
    def move():
        data = _payload()
        message = emulator.move_message(_text(data, "user_id"), _text(data, "message_id"), _text(data, "folder"))
        return _reply(message, 200, "Message moved.")

    @bp.post("/users/<user_id>/revoke")
    def revoke(user_id: str):
        code = int(_payload().get("code") or 50173)
        emulator.revoke_user(user_id, code)
        return _reply({"user_id": user_id, "code": code}, 200, f"User {user_id} revoked (AADSTS{code}).")

    @bp.post("/users/<user_id>/invalidate-sync-state")
    def invalidate_sync_state(user_id: str):
        emulator.invalidate_sync_state(user_id)
        return _reply({"user_id": user_id}, 200, f"Delta tokens of {user_id} forgotten: the next delta call gets 410.")

    @bp.post("/tenants/<tenant_id>/remove-app")
    def remove_app(tenant_id: str):
        emulator.remove_app(tenant_id)
        return _reply({"tenant_id": tenant_id}, 200, f"App removed from tenant {tenant_id}.")

    @bp.post("/approvals/<request_id>/approve")
    def approve(request_id: str):
        emulator.approve_request(request_id)
        return _reply({"id": request_id}, 200, "Request approved: tenant-wide consent granted.")

    @bp.post("/approvals/<request_id>/deny")
    def deny(request_id: str):
        emulator.deny_request(request_id)
        return _reply({"id": request_id}, 200, "Request denied: nothing granted.")

    @bp.post("/lifecycle")
    def lifecycle():
        data = _payload()
        subscription_id, event = _text(data, "subscription_id"), _text(data, "event")
        emulator.trigger_lifecycle(subscription_id, event)
        return _reply({"subscription_id": subscription_id, "event": event}, 202, f"Sent {event}.")

    @bp.post("/faults")
    def set_fault():
        data = _payload()
        _apply_fault(emulator, _text(data, "kind"), data)
        return _reply({"kind": data["kind"]}, 201, f"Fault {data['kind']} set.")

    @bp.route("/faults", methods=["DELETE"])
    @bp.post("/faults/clear")
    def clear_faults():
        emulator.clear_faults()
        return _reply({}, 200, "Faults cleared.")

    @bp.post("/faults/reset")
    def reset_all_faults():
        reset_faults(emulator)
        return _reply({}, 200, "All faults reset: no injected failures, default limits and delivery.")

    @bp.post("/limits")
    def set_limits():
        limits = emulator.set_graph_limits(**_settings(_payload(), emulator.set_graph_limits()))
        return _reply(limits, 200, "Throttling limits changed.")

    @bp.post("/mail-limits")
    def set_mail_limits():
        limits = emulator.set_mail_limits(**_settings(_payload(), emulator.set_mail_limits()))
        return _reply(limits, 200, "Mail size limits changed.")

    @bp.post("/delivery")
    def configure_delivery():
        settings = emulator.configure_delivery(**_settings(_payload(), emulator.configure_delivery()))
        return _reply(settings, 200, "Delivery settings changed.")

    @bp.post("/clock/advance")
    def advance_clock():
        seconds = float(_text(_payload(), "seconds"))
        now = emulator.advance_clock(seconds)
        return _reply({"now": now.isoformat()}, 200, f"Clock advanced {seconds:g} s.")

    @bp.get("/requests")
    def list_requests():
        entries = emulator.requests(request.args.get("method"), request.args.get("path_prefix"))
        limit = request.args.get("limit", type=int)
        if limit:
            entries = entries[-limit:]
        return jsonify([_request_json(r) for r in entries])

    @bp.route("/requests", methods=["DELETE"])
    @bp.post("/requests/clear")
    def clear_requests():
        emulator.clear_requests()
        return _reply({}, 200, "Request log cleared.")

    return bp


def _apply_fault(emulator: "Emulator", kind: str, data: dict[str, Any]) -> None:
    """Set one fault: refresh, token_endpoint, graph or latency."""
    count = int(data.get("count") or 1)
    if kind == "refresh":
        emulator.fail_next_refresh(int(_text(data, "code")), user_id=data.get("user_id") or None, count=count)
    elif kind == "token_endpoint":
        retry_after = data.get("retry_after")
        emulator.fail_token_endpoint(int(_text(data, "status")), retry_after=int(retry_after) if retry_after else None,
                                     count=count)
    elif kind == "graph":
        options = {k: data[k] for k in ("path", "method") if data.get(k)}
        options |= {k: int(data[k]) for k in ("nth", "times", "retry_after") if data.get(k)}
        if data.get("rate"):
            options["rate"] = float(data["rate"])
        emulator.add_graph_fault(int(_text(data, "status")), **options)
    elif kind == "latency":
        emulator.set_graph_latency(float(_text(data, "ms")))
    else:
        raise ValueError(f"unknown fault kind {kind!r}: use refresh, token_endpoint, graph or latency")


def _state(emulator: "Emulator") -> dict[str, Any]:
    directory = emulator.directory
    return {
        "base_url": emulator.base_url,
        "ca_file": emulator.ca_file,
        "now": emulator.clock.now().isoformat(),
        "tenants": [_plain(t, removed_clients=sorted(t.removed_clients)) for t in directory.tenants()],
        "users": [_plain(u) for u in directory.users()],
        "apps": [_plain(a, permissions=sorted(a.permissions), redirect_uris=list(a.redirect_uris))
                 for a in directory.apps()],
        "grants": [_plain(g, scopes=sorted(g.scopes)) for g in directory.grants()],
        "approval_requests": [_plain(r, scopes=sorted(r.scopes)) for r in directory.approval_requests()],
        "subscriptions": emulator.subscription_list(),
        "delivery": emulator.configure_delivery(),
        "limits": emulator.set_graph_limits(),
        "mail_limits": emulator.set_mail_limits(),
        "faults": fault_lines(emulator, Names(directory)),
    }


def _render(template: str, emulator: "Emulator", **context: Any) -> str:
    """A page of the control blueprint, with names for ids and the outcome of the last form."""
    return render_template(template, names=Names(emulator.directory), base_url=emulator.base_url,
                           ca_file=emulator.ca_file, now=emulator.clock.now().isoformat(),
                           done=request.args.get("done"), failed=request.args.get("failed"), **context)


def _protect(bp: Blueprint, token: str) -> None:
    """Refuse state changes from other origins, and forms without ``token`` (which every page form carries)."""
    @bp.context_processor
    def form_token() -> dict[str, str]:
        return {"csrf_token": token}

    @bp.before_request
    def same_origin_only() -> None:
        if request.method in SAFE_METHODS:
            return
        origin = request.headers.get("Origin")
        if origin is not None and origin != request.host_url.rstrip("/"):
            abort(403, f"a request from {origin} may not change the emulator")
        if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            abort(403, "a request from another site may not change the emulator")
        if _from_form() and not hmac.compare_digest(request.form.get("csrf_token", ""), token):
            abort(403, "the form has no valid csrf_token: reload the control page and submit it again")


def _plain(record: Any, **overrides: Any) -> dict[str, Any]:
    """A dataclass record as JSON-ready fields (datetimes in ISO 8601)."""
    fields = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(record).items()}
    return {**fields, **overrides}


def _request_json(entry: dict[str, Any]) -> dict[str, Any]:
    body: bytes = entry["body"]
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {**entry, "headers": dict(entry["headers"]), "time": entry["time"].isoformat(), "body": text,
            "body_encoding": encoding}


def _payload() -> dict[str, Any]:
    if request.is_json:
        return request.get_json(silent=True) or {}
    return {k: v for k, v in request.form.items() if k not in FORM_ONLY}


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value in (None, ""):
        raise ValueError(f"{name!r} is required")
    return str(value)


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean field; in a form, an absent checkbox means False."""
    if name not in data:
        return False if _from_form() else default
    value = data[name]
    if isinstance(value, bool):
        return value
    word = str(value).lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"{name!r} must be true or false, not {value!r}")
    return word in TRUE_WORDS


def _settings(data: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The settings ``data`` changes, each typed like its current value; an unknown name is a ValueError.

    JSON changes only the names it carries. A form sends all its settings, and leaves out an
    unchecked box: there, a missing boolean means False.
    """
    unknown = set(data) - set(current)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}: use {', '.join(current)}")
    changes = {}
    for name, value in current.items():
        if isinstance(value, bool):
            if name in data or _from_form():
                changes[name] = _flag(data, name, value)
        elif data.get(name) not in (None, ""):
            changes[name] = type(value)(data[name])
    return changes


def _list(value: Any) -> list[str]:
    """A JSON list, or a form field of comma- or whitespace-separated values."""
    if value in (None, ""):
        return []
    return [str(v) for v in value] if isinstance(value, list) else re.split(r"[\s,]+", str(value).strip())


def _attachments(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON delivery's attachments, as :func:`emulator.attachments.from_spec` reads them (a file's bytes as
    ``content_base64``)."""
    value = data.get("attachments") or []
    if not isinstance(value, list):
        raise ValueError("'attachments' must be a list of attachment objects")
    return value


def _reply(body: Any, status: int, message: str) -> Response:
    if _from_form():
        return _back(done=message)
    response = jsonify(body)
    response.status_code = status
    return response


def _from_form() -> bool:
    """Whether the page's HTML form sent this request (answered with a redirect, not JSON)."""
    return request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")


def _back(**note: str) -> Response:
    """Post/redirect/get: back to the control page the form names in ``next`` (the main page otherwise)."""
    target = request.form.get("next", "")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        target = url_for("control.page")
    return redirect(f"{target}{'&' if '?' in target else '?'}{urlencode(note)}", 303)


def _register_errors(bp: Blueprint) -> None:
    def handler(status: int, code: str):
        def handle(e: Exception):
            message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            if _from_form():
                return _back(failed=f"{code}: {message}")
            return jsonify({"error": {"code": code, "message": message}}), status
        return handle

    bp.register_error_handler(403, lambda e: (jsonify({"error": {"code": "forbidden", "message": e.description}}),
                                              403))
    bp.register_error_handler(ValueError, handler(400, "badRequest"))
    bp.register_error_handler(KeyError, handler(404, "notFound"))
    bp.register_error_handler(GraphError, lambda e: handler(e.status, e.code)(e))
