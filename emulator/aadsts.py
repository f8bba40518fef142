"""AADSTS errors: the codes the emulator returns, and their token-endpoint and redirect shapes.

Descriptions follow https://learn.microsoft.com/entra/identity-platform/reference-error-codes
and messages observed in the wild (see ../shared/reference/msal-consent.md §3-4). The client
assertion codes (700021, 700023, 700024, 700027, 50027) are as the Azure SDK documents them
(https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal)
with the texts Entra answered in AzureAD/microsoft-authentication-library-for-dotnet#4951 (700024),
#2746 (700023), #124 (50027) and Azure/azure-sdk-for-net#29007 (700027, key not found); msal's
``client_credential`` documentation quotes 700027's signature mismatch. The
``error`` string is what clients should react to; the code and text are for people.
The token endpoint answers ``{"error", "error_description", "error_codes", "timestamp",
"trace_id", "correlation_id", "error_uri", "suberror"?}``; descriptions end, as Entra's do,
with ``\\r\\nTrace ID: ...\\r\\nCorrelation ID: ...\\r\\nTimestamp: ...``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

CERTIFICATE_DOCS = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"


class Entry(NamedTuple):
    error: str
    message: str
    status: int = 400
    suberror: str | None = None


CATALOGUE: dict[int, Entry] = {
    50000: Entry("server_error", "There was an error issuing a token.", 500),
    50011: Entry("invalid_request", "The redirect URI '{redirect_uri}' specified in the request does not "
                 "match the redirect URIs configured for the application '{client_id}'."),
    50020: Entry("invalid_request", "User account '{user}' from identity provider does not exist in "
                 "tenant '{tenant}' and cannot access the application '{client_id}' in that tenant."),
    50027: Entry("invalid_client", "Invalid JWT token. {reason}", 401),
    50057: Entry("invalid_grant", "The user account is disabled."),
    50058: Entry("login_required", "A silent sign-in request was sent but no user is signed in."),
    50173: Entry("invalid_grant", "The provided grant has expired due to it being revoked, a fresh auth "
                 "token is needed. The user might have changed or reset their password.", 400, "bad_token"),
    54005: Entry("invalid_grant", "OAuth2 Authorization code was already redeemed, please retry with a new "
                 "valid code or use an existing refresh token."),
    65001: Entry("invalid_grant", "The user or administrator has not consented to use the application with "
                 "ID '{client_id}'. Send an interactive authorization request for this user and resource.",
                 400, "consent_required"),
    65004: Entry("access_denied", "User declined to consent to access the app."),
    70000: Entry("invalid_grant", "The provided value for the '{parameter}' parameter is not valid.{detail}",
                 400, "bad_token"),
    70003: Entry("unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'."),
    70007: Entry("invalid_request", "The application returned an unsupported value of 'response_mode' "
                 "when requesting a token.{detail}"),
    70008: Entry("invalid_grant", "The provided authorization code or refresh token has expired due to "
                 "inactivity. Send a new interactive authorization request for this user and resource."),
    70011: Entry("invalid_scope", "The provided value for the input parameter 'scope' is not valid. "
                 "The scope '{scope}' is not valid."),
    90002: Entry("invalid_tenant", "Tenant '{tenant}' not found. Check to make sure you have the correct "
                 "tenant ID and are signing into the correct cloud."),
    90033: Entry("temporarily_unavailable", "A transient error has occurred. Please try again.", 503),
    90055: Entry("temporarily_unavailable", "There are too many incoming requests. Please try again later.", 429),
    90014: Entry("invalid_request", "The required field '{field}' is missing from the credential. Ensure that you "
                 "have all the necessary parameters for the login request."),
    90093: Entry("access_denied", "Calling principal cannot consent due to lack of permissions."),
    90094: Entry("access_denied", "The grant requires admin permission."),
    90095: Entry("access_denied", "Admin consent is required for the permissions requested by this "
                 "application. An admin consent request may be sent to the admin."),
    90130: Entry("invalid_request", "Application '{client_id}' is not supported over the /common or "
                 "/consumers endpoints. Please use the /organizations or tenant-specific endpoint."),
    500112: Entry("invalid_grant", "The reply address '{redirect_uri}' does not match the reply address "
                  "'{expected}' provided when requesting Authorization code."),
    501481: Entry("invalid_grant", "The Code_Verifier does not match the code_challenge supplied in the "
                  "authorization request."),
    650053: Entry("invalid_client", "The application '{client_id}' asked for scope '{scope}' that doesn't "
                  "exist on the resource '00000003-0000-0000-c000-000000000000'. Contact the app vendor."),
    700005: Entry("invalid_grant", "Provided Authorization Code is intended to use against other tenant, "
                  "thus rejected."),
    700016: Entry("unauthorized_client", "Application with identifier '{client_id}' was not found in the "
                  "directory '{tenant}'. This can happen if the application has not been installed by the "
                  "administrator of the tenant or consented to by any user in the tenant."),
    700021: Entry("invalid_client", "Client assertion application identifier doesn't match 'client_id' parameter. "
                  f"Review the documentation at {CERTIFICATE_DOCS} .", 401),
    700023: Entry("invalid_client", f"Client assertion audience claim does not match Realm issuer. Review the "
                  f"documentation at {CERTIFICATE_DOCS} .", 401),
    700024: Entry("invalid_client", "Client assertion is not within its valid time range. Current time: {now}, "
                  "assertion valid from {valid_from}, expiry time of assertion {expires}. Review the documentation "
                  f"at {CERTIFICATE_DOCS} .", 401),
    700027: Entry("invalid_client", "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of "
                  "key used by client: '{thumbprint}'{found}, Please visit the Azure Portal, Graph Explorer or "
                  "directly use MS Graph to see configured keys for app Id '{client_id}'.]", 401),
    700051: Entry("unsupported_response_type", "response_type '{response_type}' is not enabled for the "
                  "application."),
    700082: Entry("invalid_grant", "The refresh token has expired due to inactivity. The token was issued "
                  "on {issued} and was inactive for 90.00:00:00.", 400, "bad_token"),
    900144: Entry("invalid_request", "The request body must contain the following parameter: '{parameter}'."),
    901001: Entry("invalid_request", "Invalid request. The prompt request parameter value '{prompt}' is invalid."),
    7000215: Entry("invalid_client", "Invalid client secret provided. Ensure the secret being sent in the "
                   "request is the client secret value, not the client secret ID, for a secret added to app "
                   "'{client_id}'.", 401),
    7000218: Entry("invalid_client", "The request body must contain the following parameter: "
                   "'client_assertion' or 'client_secret'.", 401),
    7000222: Entry("invalid_client", "The provided client secret keys for app '{client_id}' are expired. "
                   "Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
                   "or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                   401),
    9002313: Entry("invalid_grant", "Invalid request. Request is malformed or invalid."),
    9002325: Entry("invalid_request", "Proof Key for Code Exchange is required for cross-origin "
                   "authorization code redemption.{detail}"),
}


class _Blank(dict):
    """Leaves unknown ``{placeholders}`` empty, so any code can be raised with partial details."""

    def __missing__(self, key: str) -> str:
        return ""


class AadstsError(Exception):
    """An error the identity platform reports, identified by its AADSTS code.

    ``details`` fill the catalogue text's placeholders; a code outside the catalogue is an
    ``invalid_grant`` whose text is ``details["message"]``.
    """

    def __init__(self, code: int, **details: Any) -> None:
        super().__init__(code)
        self.code = code
        self.details = details

    @property
    def entry(self) -> Entry:
        return CATALOGUE.get(self.code, Entry("invalid_grant", "{message}"))

    @property
    def error(self) -> str:
        return self.entry.error

    @property
    def status(self) -> int:
        return self.entry.status

    @property
    def message(self) -> str:
        """``AADSTS<code>: <text>`` without the trace suffix."""
        return f"AADSTS{self.code}: " + self.entry.message.format_map(_Blank(self.details))

    def __str__(self) -> str:
        return self.message


class Trace(NamedTuple):
    """Per-response ids Entra attaches to every error."""

    trace_id: str
    correlation_id: str
    timestamp: str

    @classmethod
    def new(cls, now: datetime, correlation_id: str | None = None) -> "Trace":
        return cls(str(uuid.uuid4()), correlation_id or str(uuid.uuid4()), now.strftime("%Y-%m-%d %H:%M:%SZ"))

    def describe(self, error: AadstsError) -> str:
        return (f"{error.message}\r\nTrace ID: {self.trace_id}\r\nCorrelation ID: {self.correlation_id}"
                f"\r\nTimestamp: {self.timestamp}")


def token_error_body(error: AadstsError, trace: Trace, error_base: str) -> dict[str, Any]:
    """The JSON the token endpoint answers with for ``error``."""
    body: dict[str, Any] = {
        "error": error.error,
        "error_description": trace.describe(error),
        "error_codes": [error.code],
        "timestamp": trace.timestamp,
        "trace_id": trace.trace_id,
        "correlation_id": trace.correlation_id,
        "error_uri": error_uri(error_base, error.code),
    }
    if error.entry.suberror:
        body["suberror"] = error.entry.suberror
    return body


def redirect_error_params(error: AadstsError, trace: Trace, error_base: str) -> dict[str, str]:
    """The query parameters an error redirect to the app's redirect URI carries (before ``state``)."""
    return {
        "error": error.error,
        "error_description": trace.describe(error),
        "error_uri": error_uri(error_base, error.code),
    }


def error_uri(base: str, code: int) -> str:
    return f"{base}/error?code={code}"
