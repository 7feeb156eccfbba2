"""In a real browser (desktop size): issue 15's charts render with labelled axes, a summary in words and a
data table behind a toggle. Faculty see when students arrived on the session page; ops see a device's
uptime on its page and the SLA compliance on the ticket board. The figures themselves are checked in
tests/web/test_charts_api.py; here, that the page draws and describes what the API answers."""
from __future__ import annotations

from datetime import timedelta

from support.browser_helpers import axe_violations, chromium, log_in, run_in_browser_thread
from support.hub_helpers import session_with_device

from hub.db.attendance import AttendanceChange, apply_attendance_changes


async def _chart(page, figure: str) -> dict:
    """The drawn chart inside ``figure``: axis titles, summary, and the data table's rows once shown."""
    svg = page.locator(f"{figure} svg.chart")
    await svg.locator(".chart-x-title").wait_for(timeout=10_000)
    toggle = page.locator(f"{figure} .chart-table-toggle")
    await toggle.click()
    rows = await page.locator(f"{figure} .chart-table tbody tr").all_text_contents()
    return {
        "x": await svg.locator(".chart-x-title").text_content(),
        "y": await svg.locator(".chart-y-title").text_content(),
        "ticks": await svg.locator(".chart-label").count(),
        "summary": await page.locator(f"{figure} .chart-summary").text_content(),
        "described": await svg.get_attribute("aria-describedby"),
        "expanded": await toggle.get_attribute("aria-expanded"),
        "rows": rows,
    }


async def test_charts_render_with_labelled_axes_summary_and_table(hub, hub_campus, test_db, tmp_path):
    session, device = session_with_device(hub_campus)
    first, second = session.enrolled[:2]
    await test_db.run(lambda conn: apply_attendance_changes(conn, [
        AttendanceChange(session.session_id, first, "present", "qr", session.starts_at - timedelta(seconds=60)),
        AttendanceChange(session.session_id, second, "present", "qr", session.starts_at + timedelta(seconds=150)),
    ], actor="test", reason="scans for the arrival chart"), transaction=True)
    now = session.starts_at
    await test_db.execute("INSERT INTO device_health_history (device_id, at, change, online) VALUES ($1, $2, 'online', true)",
                          device.device_id, now - timedelta(days=2))
    await test_db.execute(
        "INSERT INTO tickets (room_id, title, priority, state, source, sla_due_at, resolved_at)"
        " VALUES ($1, 'Projector flickers', 'P2', 'resolved', 'report', $2, $3)",
        session.room_id, now - timedelta(hours=2), now - timedelta(hours=3))
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    base = f"http://127.0.0.1:{hub.web_port}"

    async def browse() -> dict:
        async with chromium() as browser:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await log_in(page, base, faculty, "campushub")
            await page.goto(f"{base}/faculty/sessions/{session.session_id}")
            arrivals = await _chart(page, "#arrivals")
            steps = await page.locator("#arrivals path.chart-step").count()
            axe = [v for v in await axe_violations(page) if any("arrival" in t for t in v["targets"])]
            await page.locator("#arrivals").screenshot(path=str(tmp_path / "arrivals.png"))
            # The console's tiles draw sparklines with the same module: a gap (null) is skipped.
            spark = await page.evaluate("""() => {
                const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
                document.body.appendChild(svg);
                CampusCharts.sparkline(svg, [400, 500, null, 720], {label: "CO2", unit: "ppm"});
                return {label: svg.getAttribute("aria-label"),
                        points: svg.querySelector("polyline").getAttribute("points").split(" ").length};
            }""")
            await page.locator("#logout").click()
            await page.wait_for_url(f"{base}/login")

            await log_in(page, base, "ops", "campushub")
            await page.goto(f"{base}/ops/devices/{device.device_id}")
            uptime = await _chart(page, "figure:has(svg[data-chart=uptime])")
            await page.locator("figure:has(svg[data-chart=uptime])").screenshot(path=str(tmp_path / "uptime.png"))
            await page.goto(f"{base}/ops/tickets")
            sla = await _chart(page, "figure:has(svg[data-chart=sla])")
            await page.locator("figure:has(svg[data-chart=sla])").screenshot(path=str(tmp_path / "sla.png"))
            return {"arrivals": arrivals, "steps": steps, "spark": spark, "axe": axe, "uptime": uptime, "sla": sla,
                    "errors": errors}

    result = await run_in_browser_thread(browse)
    assert result["errors"] == []
    arrivals = result["arrivals"]
    assert (arrivals["x"], arrivals["y"]) == ("Minutes from the start", "Students checked in")
    assert result["steps"] == 1
    assert arrivals["summary"].startswith(f"2 of {len(session.enrolled)} enrolled students checked in: 1 before the start")
    assert arrivals["described"] and arrivals["expanded"] == "true"
    assert arrivals["rows"] == ["−11", "+22"]  # minute −1: 1 in; minute +2: 2 in
    assert result["axe"] == []
    assert result["spark"] == {"label": "CO2: latest 720 ppm, range 400–720 ppm, 3 readings", "points": 3}
    uptime = result["uptime"]
    assert uptime["y"] == "Online (% of day)" and uptime["x"].startswith("Day (")
    assert len(uptime["rows"]) == 14 and uptime["summary"].startswith("Online ")
    sla = result["sla"]
    assert (sla["x"].startswith("Week starting"), sla["y"]) == (True, "Tickets due")
    assert "resolved on time" in sla["summary"]
    assert len(sla["rows"]) == 8
