"""The emulator as Microsoft's own Python SDK (``msgraph-sdk``, kiota over httpx) sees it.

Every call goes over loopback HTTPS through the SDK's request builders and its default middleware
(retry, redirect, the ``/me`` URL replacement); the token comes from a real msal auth-code sign-in
against the emulator's identity platform. What the service does by hand with requests, the SDK does
its own way (``delta()`` with parentheses, ``sendMail`` parameters with capitals), so these tests
catch where the emulator is stricter than Graph.

Known SDK bugs that fail against real Graph too are worked around here, never in the emulator:

- msgraph-core imports ``deprecated`` in its batch modules without declaring it
  (https://github.com/microsoftgraph/msgraph-sdk-python-core/issues/1030): the test extra installs
  ``Deprecated`` itself.
- The SDK's generated request builders, and kiota's ``default_query_parameters``, warn
  ``DeprecationWarning`` about their own classes when first imported (the SDK's own code, not ours);
  those two warnings are ignored below.
- msgraph-core's ``AsyncGraphTransport`` has no ``aclose``, so closing the client leaves its pooled
  connections open (the same bug kiota fixed in its own transport,
  https://github.com/microsoft/kiota-python/issues/494): the fixture closes the inner transport itself.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import msal
import pytest
import requests
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.messages.item.create_reply.create_reply_post_request_body import (
    CreateReplyPostRequestBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.graph_request_adapter import options as sdk_middleware_options
from msgraph_core import GraphClientFactory

from emulator import Emulator

from .graph_support import Receiver

pytestmark = [pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning")]

SCOPES = ["User.Read", "Mail.ReadWrite", "Mail.Send"]
REDIRECT_URI = "http://localhost/callback"
IMMUTABLE = 'IdType="ImmutableId"'
T = TypeVar("T")


class _EmulatorToken(AccessTokenProvider):
    """Hands the SDK the access token msal got from the emulator, for the emulator's host only."""

    def __init__(self, token: str, host: str) -> None:
        self._token = token
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict | None = None) -> str:
        return self._token if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


@dataclass
class Sdk:
    """A signed-in user's :class:`GraphServiceClient` on the emulator, and the loop it runs on."""

    emulator: Emulator
    client: GraphServiceClient
    user_id: str
    email: str
    runner: asyncio.Runner

    def run(self, call: Awaitable[T]) -> T:
        return self.runner.run(call)

    def deliver(self, subject: str, **fields: Any) -> dict:
        return self.emulator.mail.deliver(self.user_id, subject=subject, body=f"About {subject}",
                                          sender="carol@customer.example", to=[self.email], **fields)


def sign_in(emulator: Emulator, client_id: str, secret: str, user_id: str) -> dict:
    """msal's auth-code flow (PKCE, state, nonce) against the emulator; the browser is the emulator's own."""
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_file
    app = msal.ConfidentialClientApplication(client_id, client_credential=secret, instance_discovery=False,
                                             authority=f"{emulator.authority_host}/organizations",
                                             http_client=session)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    redirected = emulator.authorize(flow["auth_uri"], user_id)
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(redirected).query)))
    session.close()
    assert "access_token" in result, result
    return result


@pytest.fixture
def sdk(emulator: Emulator) -> Iterator[Sdk]:
    client_id, secret = emulator.register_app(redirect_uris=[REDIRECT_URI])
    tenant_id = emulator.add_tenant("contoso.example")
    email = "alice@contoso.example"
    user_id = emulator.add_user(tenant_id, email, display_name="Alice Adams")
    token = sign_in(emulator, client_id, secret, user_id)["access_token"]
    transport = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=emulator.ca_file), trust_env=False)
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(transport=transport, trust_env=False), options=sdk_middleware_options)
    auth = BaseBearerTokenAuthenticationProvider(_EmulatorToken(token, urlsplit(emulator.graph_endpoint).hostname))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{emulator.graph_endpoint}/v1.0"
    with asyncio.Runner() as runner:
        yield Sdk(emulator, GraphServiceClient(request_adapter=adapter), user_id, email, runner)
        runner.run(transport.aclose())


def immutable_ids() -> RequestConfiguration:
    config = RequestConfiguration()
    config.headers.add("Prefer", IMMUTABLE)
    return config


def test_me_after_signing_in_with_msal(sdk: Sdk) -> None:
    me = sdk.run(sdk.client.me.get())
    assert (me.id, me.mail, me.display_name) == (sdk.user_id, sdk.email, "Alice Adams")


def test_inbox_pages_with_selected_headers(sdk: Sdk) -> None:
    for n in range(5):
        sdk.deliver(f"Invoice {n}")
    inbox = sdk.client.me.mail_folders.by_mail_folder_id("inbox").messages
    config = RequestConfiguration(query_parameters=inbox.MessagesRequestBuilderGetQueryParameters(
        select=["subject", "internetMessageHeaders"], top=2, orderby=["receivedDateTime desc"]))
    page = sdk.run(inbox.get(config))
    subjects = []
    while True:
        subjects += [m.subject for m in page.value]
        assert all(any(h.name == "Message-ID" for h in m.internet_message_headers) for m in page.value)
        assert all(m.body is None for m in page.value)
        if not page.odata_next_link:
            break
        page = sdk.run(inbox.with_url(page.odata_next_link).get())
    assert subjects == [f"Invoice {n}" for n in reversed(range(5))]


def test_message_by_immutable_id(sdk: Sdk) -> None:
    delivered = sdk.deliver("Contract")
    listed = sdk.run(sdk.client.me.messages.get(immutable_ids())).value
    [message] = listed
    assert message.id != delivered["id"]
    moved = sdk.emulator.move_message(sdk.user_id, delivered["id"], "archive")
    again = sdk.run(sdk.client.me.messages.by_message_id(message.id).get(immutable_ids()))
    assert (again.id, again.subject, again.parent_folder_id) == (message.id, "Contract", moved["parentFolderId"])


def test_delta_through_the_builder_reaches_a_delta_link(sdk: Sdk) -> None:
    for n in range(3):
        sdk.deliver(f"Old {n}")
    delta = sdk.client.me.mail_folders.by_mail_folder_id("inbox").messages.delta
    config = RequestConfiguration(query_parameters=delta.DeltaRequestBuilderGetQueryParameters(select=["subject"]))
    config.headers.add("Prefer", "odata.maxpagesize=2")
    page = sdk.run(delta.get(config))
    seen = [m.subject for m in page.value]
    while page.odata_next_link:
        page = sdk.run(delta.with_url(page.odata_next_link).get(config))
        seen += [m.subject for m in page.value]
    assert sorted(seen) == ["Old 0", "Old 1", "Old 2"] and page.odata_delta_link
    sdk.deliver("New")
    changes = sdk.run(delta.with_url(page.odata_delta_link).get())
    assert [m.subject for m in changes.value] == ["New"] and changes.odata_delta_link


def test_subscription_create_renew_reauthorize_delete(sdk: Sdk, receiver: Receiver) -> None:
    now = sdk.emulator.clock.now()
    created = sdk.run(sdk.client.subscriptions.post(Subscription(
        change_type="created,updated", notification_url=receiver.url, lifecycle_notification_url=receiver.url,
        resource="/me/mailFolders('inbox')/messages", client_state="s3cret",
        expiration_date_time=now + timedelta(hours=2))))
    assert len(receiver.validations) == 2 and created.client_state == "s3cret"
    sdk.deliver("Ping")
    [item, *_] = receiver.wait_for(1)
    assert item["subscriptionId"] == created.id and item["clientState"] == "s3cret"

    subscription = sdk.client.subscriptions.by_subscription_id(created.id)
    later = now + timedelta(days=2)
    renewed = sdk.run(subscription.patch(Subscription(expiration_date_time=later)))
    assert renewed.expiration_date_time.astimezone(timezone.utc) == later.astimezone(timezone.utc)
    sdk.run(subscription.reauthorize.post())
    sdk.run(subscription.delete())
    assert [s.id for s in sdk.run(sdk.client.subscriptions.get()).value] == []


def test_create_reply_with_a_comment_then_send(sdk: Sdk) -> None:
    original = sdk.deliver("Quote 7")
    message = sdk.client.me.messages.by_message_id(original["id"])
    draft = sdk.run(message.create_reply.post(CreateReplyPostRequestBody(comment="Accepted, thanks.")))
    assert draft.is_draft and draft.subject == "RE: Quote 7"
    assert "Accepted, thanks." in draft.body.content
    sdk.run(sdk.client.me.messages.by_message_id(draft.id).send.post())
    [sent] = sdk.emulator.mail.messages(sdk.user_id, "sentitems")
    assert sent["conversationId"] == original["conversationId"] and "Accepted, thanks." in sent["body"]["content"]


def test_send_mail(sdk: Sdk) -> None:
    body = SendMailPostRequestBody(save_to_sent_items=False, message=Message(
        subject="Welcome", body=ItemBody(content_type=BodyType.Text, content="Hello Dave"),
        to_recipients=[Recipient(email_address=EmailAddress(address="dave@partner.example"))]))
    sdk.run(sdk.client.me.send_mail.post(body))
    assert sdk.emulator.mail.messages(sdk.user_id, "sentitems") == []
    [outgoing] = [r for r in sdk.emulator.requests("POST") if r["path"].endswith("/sendMail")]
    assert outgoing["status"] == 202


def test_the_sdk_retries_a_throttled_call_after_retry_after(sdk: Sdk) -> None:
    sdk.emulator.add_graph_fault(429, path="^/me$", times=1, retry_after=1)
    started = datetime.now()
    me = sdk.run(sdk.client.me.get())
    assert me.id == sdk.user_id
    assert [r["status"] for r in sdk.emulator.requests("GET", "/v1.0/me")] == [429, 200]
    assert datetime.now() - started >= timedelta(seconds=1)
