"""The model zoo on a local hub: `effhub browse`, the list page (over HTTP and in headless Chromium) show every zoo
entry with the same metrics, among them the zoo table's headline metric.

The committed cards (`model_cards/<name>/README.md` and images; the weights are not committed) are published to a
fresh local hub through the real client.
"""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from effhub.hub.server import LocalHubServer
from hub_helpers import raw_request
from scripts import build_zoo
from test_local_hub_pages import browser  # noqa: F401  (the headless Chromium fixture; skipped without one)

ENTRIES = build_zoo.load_zoo(build_zoo.ZOO_FILE)
BUILT = [entry for entry in ENTRIES if (build_zoo.CARDS_DIR / entry["name"] / build_zoo.RECORD_FILE).is_file()]


@pytest.fixture(scope="module")
def zoo_hub(tmp_path_factory):
    """The committed cards (README.md and images) published to a fresh local hub."""
    if not BUILT:
        pytest.skip("no zoo cards yet: run `make zoo`")
    root = tmp_path_factory.mktemp("zoo-hub")
    with LocalHubServer(root / "hub") as hub:
        api = HfApi(endpoint=hub.url)
        for entry in BUILT:
            api.create_repo(entry["repo_id"], repo_type=entry["repo_type"])
            api.upload_folder(repo_id=entry["repo_id"], repo_type=entry["repo_type"],
                              folder_path=build_zoo.CARDS_DIR / entry["name"],
                              allow_patterns=["README.md", "images/*", "*.png"])
        yield hub


def headline_value(entry) -> str:
    return f"{build_zoo.headline_of(entry, build_zoo.CARDS_DIR / entry['name'])['value']:.4g}"


def test_browse_and_list_page_show_the_zoo_with_the_same_metrics(zoo_hub):
    from effhub.hub.browse import browse_models

    rows = {row["id"]: row for row in browse_models(endpoint=zoo_hub.url)}
    _, _, page = raw_request(zoo_hub.url, "GET", "/", headers={"Accept": "text/html"})
    page = page.decode()
    for entry in BUILT:
        assert entry["repo_id"] in page
        if entry["repo_type"] != "model":
            continue
        shown = [f"{metric['value']:.4g}" for metric in rows[entry["repo_id"]]["metrics"]]
        assert headline_value(entry) in shown, entry["name"]
        row = page.split(f'data-repo="{entry["repo_id"]}"')[1].split("</tr>")[0]
        assert shown == [value.split("<")[0] for value in row.split('class="metric-value">')[1:]], entry["name"]


def test_zoo_list_in_a_browser(zoo_hub, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(zoo_hub.url + "/")
    browser.save_screenshot(str(tmp_path / "zoo-list.png"))
    print(f"screenshot: {tmp_path / 'zoo-list.png'}")
    rows = {row.get_attribute("data-repo"): row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.repo")}
    for entry in BUILT:
        assert entry["repo_id"] in rows
        if entry["repo_type"] == "model":
            assert headline_value(entry) in rows[entry["repo_id"]], (entry["name"], rows[entry["repo_id"]])
    browser.get(zoo_hub.url + "/" + BUILT[0]["repo_id"])
    assert headline_value(BUILT[0]) in browser.find_element(By.ID, "metrics").text
