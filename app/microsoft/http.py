"""The one HTTP session type used for Graph and msal calls."""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters


class Session(requests.Session):
    """A ``requests.Session`` whose ``verify`` setting is really used.

    requests lets the ``REQUESTS_CA_BUNDLE`` environment variable override ``Session.verify``;
    the service reads that variable into its settings once and passes the result on every request.
    """

    def __init__(self, verify: str | bool = True, pool_size: int = 32) -> None:
        super().__init__()
        self.verify = verify
        # Workers, the renewal pool and web threads share one session: keep their connections alive.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)
