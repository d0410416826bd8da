"""The web console in a real browser against a live ragd: sign-in, upload, chat, feedback, evals,
monitoring, and hostile input (bad credentials, failed uploads, HTML in documents and answers)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from ragd.db.models import Feedback

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
DOC_A = (
    "# Zorblax Bridge\n\nThe Zorblax Bridge is a suspension bridge over the Quillon River. "
    "It was designed by the engineer Mara Quillfeather and opened in 1897.\n"
)
DOC_B = f"# Rivers\n\nThe Danube flows through ten countries and ends in the Black Sea. {HOSTILE}\n"


def sign_in_password(page: Any, live: dict[str, Any]) -> None:
    admin = live["admin"]
    page.goto("/ui/")
    page.get_by_label("Tenant").fill(admin.tenant)
    page.get_by_label("User name").fill(admin.username)
    page.get_by_label("Password", exact=True).fill(admin.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/ui/collections")
    page.get_by_text(f"{admin.tenant} · admin").wait_for()


def test_sign_in_with_a_key_and_bad_credentials(page: Any, live: dict[str, Any], shots: Path) -> None:
    page.goto("/ui/")
    page.screenshot(path=shots / "01-signin.png", full_page=True)
    # wrong password
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password", exact=True).fill("wrong")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("alert").filter(has_text="wrong or expired").wait_for()
    # wrong key
    page.get_by_label("API key").fill("ragd_not_a_real_key")
    page.evaluate("document.getElementById('notice').hidden = true")
    page.get_by_role("button", name="Sign in with key").click()
    page.get_by_role("alert").filter(has_text="wrong or expired").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    page.screenshot(path=shots / "02-signin-failed.png", full_page=True)
    # a good key: its value never lands in the URL
    page.get_by_label("API key").fill(live["reader"].key)
    page.get_by_role("button", name="Sign in with key").click()
    page.wait_for_url("**/ui/collections")
    assert live["reader"].key not in page.url
    page.get_by_text("reader").first.wait_for()
    # an expired/revoked credential: the next page sends the user back to sign in
    page.evaluate(
        "sessionStorage.setItem('ragd.credential', JSON.stringify({kind: 'jwt', value: 'eyJ.bad.token'}))"
    )
    page.goto("/ui/evals")
    page.wait_for_url(re.compile(r".*/ui/#expired$"))
    page.get_by_role("alert").filter(has_text="sign in again").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def test_upload_chat_feedback_and_evals(page: Any, live: dict[str, Any], shots: Path, tmp_path: Path) -> None:
    sign_in_password(page, live)
    # create a collection
    page.get_by_label("Name", exact=True).fill("kb")
    page.get_by_label("Description").fill(HOSTILE)
    page.get_by_role("button", name="Create").click()
    page.get_by_role("cell", name="kb", exact=True).wait_for()
    page.get_by_role("button", name="Grants of kb").click()
    page.locator("#g-subject").fill("qa-team")
    page.get_by_label("Subject type").select_option("group")
    page.get_by_role("button", name="Grant", exact=True).click()
    page.get_by_role("cell", name="qa-team", exact=True).wait_for()
    page.screenshot(path=shots / "03-collections.png", full_page=True)

    # upload two good files and one that fails
    a, b = tmp_path / "bridges.md", tmp_path / "rivers.txt"
    a.write_text(DOC_A)
    b.write_text(DOC_B)
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\n" + b"\x00\xff garbage " * 50)
    page.goto("/ui/upload")
    page.locator("#u-collection option").first.wait_for(state="attached")
    page.set_input_files("#u-files", [str(a), str(b)])
    rows = page.locator("#jobs tbody tr")
    for name in ("bridges.md", "rivers.txt"):
        rows.filter(has_text=name).locator("td.status-ready").wait_for(timeout=120_000)
    # the drop zone works from the keyboard (opens the file chooser) and by dragging files onto it
    # (Chromium's file-chooser interception proved flaky on a loaded CI machine, so the test
    # watches the click the drop zone forwards to the multi-file input, and cancels the dialog.)
    page.evaluate(
        """() => { const input = document.getElementById('u-files');
            input.addEventListener('click', (ev) => { ev.preventDefault();
                window.__chooser = input.multiple ? 'multiple' : 'single'; }, {once: true}); }"""
    )
    page.locator("#drop").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("window.__chooser !== undefined")
    assert page.evaluate("window.__chooser") == "multiple"
    transfer = page.evaluate_handle(
        """([name, text]) => { const dt = new DataTransfer();
            dt.items.add(new File([text], name, {type: 'application/pdf'})); return dt; }""",
        [bad.name, bad.read_bytes().decode("latin-1")],
    )
    page.locator("#drop").dispatch_event("drop", {"dataTransfer": transfer})
    bad_row = rows.filter(has_text="broken.pdf")
    bad_row.locator("td.status-failed, td.status-rejected").wait_for(timeout=120_000)
    assert bad_row.locator("td.error").inner_text().strip()
    page.locator("#documents tbody tr").filter(has_text="bridges.md").wait_for()
    page.screenshot(path=shots / "04-upload.png", full_page=True)

    # chat (the real agent): streamed answer, citations open the passage, feedback is stored
    page.goto("/ui/chat")
    page.get_by_label("Question").fill("Who designed the Zorblax Bridge?")
    page.get_by_role("button", name="Ask").click()
    turn = page.locator(".turn:not(.user)").last
    turn.locator(".feedback").wait_for(timeout=240_000)
    page.screenshot(path=shots / "05-chat.png", full_page=True)
    # The live agent cites: SmolLM2's own answer when the passages support it, else the quoted
    # evidence; either way the footnote opens the cited passage.
    turn.locator(".footnotes button").first.click()
    dialog = page.locator("dialog#passage")
    dialog.wait_for(state="visible")
    assert "Quillfeather" in dialog.locator("blockquote").inner_text()
    page.screenshot(path=shots / "06-chat-citation.png", full_page=True)
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Good answer").click()
    turn.get_by_text("Thanks for the feedback").wait_for()
    assert turn.get_by_role("button", name="Good answer").get_attribute("aria-pressed") == "true"
    with Session(live["state"].engine) as s:
        assert [f.rating for f in s.exec(select(Feedback)).all()] == [1]  # +1: thumbs up
    page.screenshot(path=shots / "06-chat-feedback.png", full_page=True)
    assert page.evaluate("window.__pwned") is None

    # evals: the list, one run's report (chart + download), two runs compared
    page.goto("/ui/evals")
    run_a, run_b = live["runs"]
    page.get_by_role("button", name=f"Report of run {run_a.id[:12]}").click()
    page.locator("#run-chart svg rect").first.wait_for()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download the full HTML report").click()
    report = Path(dl.value.path()).read_text()
    assert "<svg" in report and run_a.id in report
    page.locator("#cmp-a").select_option(run_a.id)
    page.locator("#cmp-b").select_option(run_b.id)
    page.get_by_role("button", name="Compare").click()
    page.locator("#cmp-table tbody tr").filter(has_text="f1").locator("td.verdict-better").wait_for()
    page.screenshot(path=shots / "07-evals.png", full_page=True)

    # monitoring: drift status (a check now), chart, experiments
    spec = {"name": "<b>prompt v2</b>", "variants": [{"name": "control"}, {"name": "v2"}]}
    made = httpx.post(f"{live['url']}/v1/experiments", json=spec, headers=live["admin"].headers)
    assert made.status_code == 201, made.text
    page.goto("/ui/monitoring")
    page.get_by_role("button", name="Results of <b>prompt v2</b>").click()
    page.locator("#variants tbody tr").filter(has_text="v2").wait_for()
    assert page.locator("#variants tbody tr").count() == 2
    page.get_by_role("button", name="Check now").click()
    page.locator("#drift-chart svg polyline").first.wait_for()
    assert page.locator("#drift-chart svg polyline").count() == 2
    page.get_by_text("Drift alarm: query_embedding").wait_for()
    page.get_by_text(re.compile(r"\d+ turns recorded")).wait_for()
    page.screenshot(path=shots / "08-monitoring.png", full_page=True)

    # phone width: every page still fits
    page.set_viewport_size({"width": 375, "height": 800})
    for name in ("collections", "upload", "chat", "evals", "monitoring"):
        page.goto(f"/ui/{name}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')]"
            ".filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > 380)"
            ".slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert width <= 380, f"{name} overflows a phone screen ({width}px): {wide}"
        page.screenshot(path=shots / f"09-phone-{name}.png", full_page=True)


def _sse(events: list[tuple[str, Any]]) -> str:
    return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)


def test_hostile_and_very_long_answers_are_escaped(page: Any, live: dict[str, Any], shots: Path) -> None:
    """The answer stream is faked at the network edge so its text is exactly what we choose."""
    sign_in_password(page, live)
    long_text = "Paris is the capital [1]. " + "word " * 20_000 + HOSTILE
    citation = {
        "number": 1,
        "document_id": "d" * 32,
        "title": "<i>Atlas</i>" + HOSTILE,
        "version": 1,
        "chunk_index": 3,
        "collection_id": "c" * 32,
        "page": 7,
        "section": "Europe <b>x</b>",
        "source": None,
        "score": 0.9,
        "text": "Paris " + HOSTILE,
        "quote": "Paris",
    }
    final = {
        "session_id": "s1",
        "message_id": "m" * 12,
        "answer": long_text,
        "citations": [citation],
        "guard_decisions": [
            {"guard": "injection", "stage": "input", "action": "redact", "reason": "<b>rule</b>"}
        ],
        "backend": "fake",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        "latency_ms": 1.0,
        "trace_id": None,
        "abstained": False,
        "blocked": False,
        "extractive": False,
        "replaced": False,
    }
    body = _sse([("token", {"text": HOSTILE}), ("reset", {}), ("token", {"text": "Paris"}), ("final", final)])
    page.route(
        "**/v1/chat", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body)
    )
    page.goto("/ui/chat")
    page.get_by_label("Question").fill("<b>What is the capital?</b>")
    page.get_by_role("button", name="Ask").click()
    turn = page.locator(".turn:not(.user)").last
    turn.locator(".guard").wait_for()
    assert "injection redact (<b>rule</b>)" in turn.locator(".guard").inner_text()
    assert turn.locator(".answer script, .answer img, .answer i").count() == 0
    assert HOSTILE in turn.locator(".answer").inner_text()
    page.get_by_role("button", name=re.compile(r"^Citation 1")).click()
    dialog = page.locator("dialog#passage")
    dialog.wait_for(state="visible")
    assert "page 7" in dialog.inner_text() and "section Europe <b>x</b>" in dialog.inner_text()
    assert dialog.locator("script, img, i, b").count() == 0
    page.screenshot(path=shots / "10-chat-hostile-long.png")
    dialog.get_by_role("button", name="Close").click()
    # the page is still usable: the answer box scrolls instead of growing without bound
    box = turn.locator(".answer").bounding_box()
    assert box is not None and box["height"] < 900
    assert page.evaluate("window.__pwned") is None

    # a stream cut before its final event (a server restart) is reported, not silently dropped
    page.unroute("**/v1/chat")
    cut = _sse([("token", {"text": "partial "})])
    page.route(
        "**/v1/chat", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=cut)
    )
    page.get_by_label("Question").fill("again")
    page.get_by_role("button", name="Ask").click()
    page.get_by_role("alert").filter(has_text="ended early").wait_for()
    page.screenshot(path=shots / "11-chat-cut.png")
