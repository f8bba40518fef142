"""The property-based tests' test client.

Each module builds its own module-scoped ``app`` (hypothesis runs every example of a test against it);
this ``client`` is module-scoped too, so it follows that app.
"""

import pytest
from flask import Flask


@pytest.fixture(scope="module")
def client(app: Flask):
    return app.test_client()
