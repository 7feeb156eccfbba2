"""Helpers shared by the web tests (imported as a top-level module; pytest puts this directory on sys.path)."""
from __future__ import annotations

PASSWORD = "correct horse battery staple"
#: HS256 key of the test apps' access tokens. Here, not in conftest.py: ``from conftest import``
#: breaks when another directory's conftest is loaded later (``pytest tests/web tests/hub``).
JWT_SECRET = b"test-secret-" + b"x" * 32


async def api_login(client, username: str, password: str = PASSWORD) -> dict:
    response = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def bearer(client, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await api_login(client, username))['access_token']}"}


async def page_login(client, username: str, password: str = PASSWORD):
    """Log the test client's cookie jar in through the login form."""
    return await client.post("/login", form={"username": username, "password": password})
