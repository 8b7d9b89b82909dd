"""The pages in headless Chromium against a real `weightyard serve --demo`, filled by huggingface_hub."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .live import DEMO_REPO, HOSTILE_REPO, PRIVATE_REPO, LiveHub, launch_browser, start, stop


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    hub = start(tmp_path_factory.mktemp("web-live") / "data")
    yield hub
    stop(hub)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live: LiveHub) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_search_finds_the_demo_model_and_its_page_shows_the_rendered_card(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Search models").fill("MiniLM")
    page.get_by_label("Search models").press("Enter")
    expect(page).to_have_url(re.compile(r"/models\?search=MiniLM"))
    page.get_by_role("link", name=DEMO_REPO).click()
    expect(page).to_have_url(re.compile(f"/{DEMO_REPO}$"))
    card = page.get_by_role("article", name="Model card")
    expect(card.get_by_role("heading", level=1)).to_have_text("all-MiniLM-L6-v2")
    expect(card.get_by_role("heading", name="Usage (Sentence-Transformers)")).to_be_visible()
    expect(card.locator("table")).to_contain_text("1,170,060,424")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("apache-2.0")
    expect(facts).to_contain_text("sentence-similarity")
    expect(page.locator("pre.snippet").last).to_contain_text(f"weightyard pull {DEMO_REPO}")


def test_files_tab_lists_files_and_opens_text_and_safetensors_files(page: Page) -> None:
    page.goto(f"/{DEMO_REPO}")
    page.get_by_role("navigation", name="Repository").get_by_role("link", name="Files").click()
    files = page.get_by_role("region", name="Files in the repository root")
    expect(files.get_by_role("link", name="1_Pooling/")).to_be_visible()
    expect(files.get_by_role("row", name=re.compile(r"model\.safetensors.*90\.9 MB"))).to_be_visible()
    files.get_by_role("link", name="config.json", exact=True).click()
    expect(page.locator("pre.file")).to_contain_text('"hidden_size": 384')
    page.go_back()
    files.get_by_role("link", name="model.safetensors", exact=True).click()
    expect(page.get_by_text("104 tensors, 22,713,728 parameters.")).to_be_visible()
    expect(page.get_by_role("cell", name="embeddings.word_embeddings.weight")).to_be_visible()
    download = page.get_by_role("link", name="Download model.safetensors")
    expect(download).to_have_attribute("href", f"/{DEMO_REPO}/resolve/main/model.safetensors")


def test_following_a_commit_shows_the_files_it_changed(page: Page) -> None:
    page.goto(f"/{DEMO_REPO}")
    page.get_by_role("link", name="Add all-MiniLM-L6-v2 (demo)").click()
    expect(page).to_have_url(re.compile(f"/{DEMO_REPO}/commit/[0-9a-f]{{40}}$"))
    # The demo ships its own .gitattributes, which replaces the default one every new repo starts with.
    expect(page.get_by_text("12 added, 1 modified, 0 removed")).to_be_visible()
    row = page.get_by_role("row", name=re.compile(r"added model\.safetensors"))
    row.get_by_role("link", name="model.safetensors").click()
    expect(page).to_have_url(re.compile(f"/{DEMO_REPO}/blob/[0-9a-f]{{40}}/model.safetensors$"))
    expect(page.get_by_text("104 tensors", exact=False)).to_be_visible()


def test_signing_in_shows_a_private_repo_and_signing_out_hides_it(page: Page, live: LiveHub) -> None:
    anonymous = page.goto(f"/{PRIVATE_REPO}")
    assert anonymous is not None and anonymous.status == 404
    expect(page.get_by_text("Private plans")).to_have_count(0)
    page.get_by_role("main").get_by_role("link", name="sign in").click()
    page.get_by_label("Access token").fill(live.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(f"/{PRIVATE_REPO}$"))
    expect(page.get_by_role("heading", name="Private plans")).to_be_visible()
    expect(page.get_by_text("Signed in as admin")).to_be_visible()
    assert live.token not in page.evaluate("document.cookie")  # HttpOnly: out of reach of page scripts
    page.goto("/models?search=private")
    expect(page.get_by_role("link", name=PRIVATE_REPO)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.get_by_role("link", name=PRIVATE_REPO)).to_have_count(0)
    after = page.goto(f"/{PRIVATE_REPO}")
    assert after is not None and after.status == 404


def test_hostile_card_renders_inert(page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"/{HOSTILE_REPO}")
    card = page.get_by_role("article", name="Model card")
    expect(card.get_by_role("heading", name="Hostile card")).to_be_visible()
    expect(card.get_by_role("link", name="a fine link")).to_have_attribute("href", "https://example.org/")
    assert card.locator("script, iframe, img[onerror], [onload], [onclick]").count() == 0
    assert page.locator('a[href^="javascript:" i], a[href^="data:" i]').count() == 0
    expect(card).to_contain_text("[markdown link](javascript:")  # shown as text, not a link
    card.get_by_text("raw link").click()
    page.locator("body").focus()
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_keyboard_users_can_skip_to_the_content(page: Page) -> None:
    page.goto(f"/{DEMO_REPO}")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    expect(page.locator("main a").first).to_be_focused()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        f"/{DEMO_REPO}",
        f"/{DEMO_REPO}/tree/main",
        f"/{DEMO_REPO}/blob/main/model.safetensors",
        "/sign-in",
    ],
)
def test_pages_fit_a_phone_width_without_sideways_scrolling(browser: Any, live: LiveHub, path: str) -> None:
    context = browser.new_context(base_url=live.url, viewport={"width": 390, "height": 844})
    phone = context.new_page()
    phone.goto(path)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
