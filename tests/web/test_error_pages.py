"""Error pages keep the signed-in user's navigation and say what happened in words, not a bare status."""
from __future__ import annotations

from web_helpers import page_login


async def test_forbidden_page_keeps_the_menu_and_says_it_in_words(client, world):
    await page_login(client, world.username("stu1"))
    response = await client.get("/admin/academic")
    assert response.status_code == 403
    html = await response.get_data(as_text=True)
    assert "<h1>You don&#39;t have access to this page</h1>" in html
    assert '<nav' in html and 'href="/student"' in html and 'id="current-user"' in html
    assert "<h1>403</h1>" not in html


async def test_unknown_page_keeps_the_menu_for_a_signed_in_user(client, world):
    await page_login(client, world.username("admin"))
    response = await client.get(f"/no-such-page-{world.suffix}")
    assert response.status_code == 404
    html = await response.get_data(as_text=True)
    assert "<h1>We couldn&#39;t find this page</h1>" in html
    assert 'href="/admin/academic"' in html and 'data-role="admin"' in html


async def test_error_page_of_an_anonymous_visitor_has_no_menu(client, world):
    response = await client.get(f"/no-such-page-{world.suffix}")
    assert response.status_code == 404
    html = await response.get_data(as_text=True)
    assert "We couldn&#39;t find this page" in html and 'id="current-user"' not in html


async def test_api_errors_keep_their_codes(client, world):
    response = await client.get(f"/api/v1/no-such-{world.suffix}")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"
