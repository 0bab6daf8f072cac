"""The local hub's web pages: HTML checks over HTTP, and the same pages in headless Chromium (skipped without one).

Browser runs keep a screenshot per page in the test's temporary folder and print its path (shown on failure). Set
EFFHUB_DOCS_SCREENSHOTS=<folder> to also copy the list and model screenshots there (docs/images).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest
from huggingface_hub import EvalResult, HfApi, ModelCardData
from PIL import Image

from effhub.hub.pages import render_card
from effhub.hub.server import LocalHubServer
from hub_helpers import raw_request

WRITE = "alice-write-0001"
EVIL_CARD = """---
library_name: effhub
---
# evil card
<script>window.__pwned = 1; document.title = "pwned";</script>
<img src="x" onerror="window.__pwned = 2">
[click me](javascript:window.__pwned=3)
![remote](http://example.invalid/tracker.png)
"""


def png_bytes(width=40, height=20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def model_folder(tmp_path: Path, name: str, metric: float) -> Path:
    from transformers import BertConfig, BertModel

    folder = tmp_path / name
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=64, max_position_embeddings=32)).save_pretrained(folder)
    data = ModelCardData(model_name=name, library_name="effhub", pipeline_tag="image-segmentation",
                         tags=["multi-task"], eval_results=[
                             EvalResult(task_type="image-segmentation", dataset_type="nyu_v2", dataset_name="NYU-v2",
                                        metric_type="mIoU", metric_value=metric)])
    (folder / "images").mkdir()
    (folder / "images" / "plot.png").write_bytes(png_bytes())
    (folder / "README.md").write_text(f"---\n{data.to_yaml()}\n---\n\n# {name}\n\nA **tiny** model.\n\n"
                                      "![training curve](images/plot.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A hub with tokens: two public models with metrics, an evil card, a dataset and a private model."""
    root = tmp_path_factory.mktemp("pages")
    (root / "tokens.yaml").write_text(f"tokens:\n  - {{token: {WRITE}, user: alice, role: write, orgs: [lab]}}\n")
    with LocalHubServer(root / "hub", tokens=root / "tokens.yaml") as hub:
        api = HfApi(endpoint=hub.url, token=WRITE)
        for name, metric in (("lab/segmenter-small", 0.4321), ("lab/segmenter-large", 0.5123)):
            api.create_repo(name)
            api.upload_folder(repo_id=name, folder_path=model_folder(root, name.split("/")[1], metric))
        api.create_repo("lab/evil-card")
        api.upload_file(repo_id="lab/evil-card", path_or_fileobj=EVIL_CARD.encode(), path_in_repo="README.md")
        api.create_repo("lab/rows", repo_type="dataset")
        api.upload_file(repo_id="lab/rows", repo_type="dataset", path_or_fileobj=b"a,b\n1,2\n",
                        path_in_repo="data.csv")
        api.create_repo("lab/hidden-model", private=True)
        api.create_tag("lab/segmenter-small", tag="v1.0")
        yield hub


def get(site, path):
    status, headers, body = raw_request(site.url, "GET", path, headers={"Accept": "text/html"})
    return status, headers, body.decode()


def test_list_page_search_filters_and_metric_sort(site):
    status, headers, page = get(site, "/")
    assert status == 200 and "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers it
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "lab/segmenter-small" in page and "0.4321" in page and "lab/rows" in page
    assert "lab/hidden-model" not in page
    _, _, page = get(site, "/?search=small")
    assert "lab/segmenter-small" in page and "lab/segmenter-large" not in page
    _, _, page = get(site, "/?type=dataset")
    assert "lab/rows" in page and "segmenter" not in page
    _, _, page = get(site, "/?task=image-segmentation&library=effhub&tag=multi-task")
    assert "lab/segmenter-small" in page and "lab/evil-card" not in page
    _, _, page = get(site, "/?sort=metric&metric=mIoU")
    assert page.index("lab/segmenter-large") < page.index("lab/segmenter-small") < page.index("lab/evil-card")


def test_repo_page_card_metrics_files_refs_and_404(site):
    status, _, page = get(site, "/lab/segmenter-small")
    assert status == 200
    assert "<strong>tiny</strong>" in page and "<table>" in page  # markdown with a table
    assert 'id="metrics"' in page and "NYU-v2" in page and "0.4321" in page
    assert "/lab/segmenter-small/resolve/" in page and "images/plot.png" in page and "model.safetensors" in page
    assert "v1.0" in page and "main" in page and 'id="commits"' in page
    status, _, page = get(site, "/lab/segmenter-small?revision=v1.0")
    assert status == 200
    for path in ("/lab/no-such-model", "/lab/hidden-model", "/lab/segmenter-small?revision=nope", "/a/b/c"):
        status, _, page = get(site, path)
        assert status == 404 and 'id="not-found"' in page, path


def test_card_html_is_escaped_and_nothing_external_is_loaded():
    html = render_card(EVIL_CARD, "model", "lab/evil-card", "0" * 40)
    assert "<script" not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    assert "&lt;script&gt;" in html and "javascript:" not in html.split("href=")[-1][:20]
    assert "example.invalid" not in html.split("[image:")[0] and "<img" not in html


# --------------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no headless Chromium here: install Debian's chromium and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def visit(browser, site, path, tmp_path, name):
    browser.get(site.url + path)
    shot = tmp_path / f"{name}.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot of {path}: {shot}")
    docs = os.environ.get("EFFHUB_DOCS_SCREENSHOTS")
    if docs and name in ("local-hub-list", "local-hub-model"):
        shutil.copy(shot, Path(docs) / f"{name}.png")
    return shot


def test_browser_list_search_and_private_repo(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    visit(browser, site, "/", tmp_path, "local-hub-list")
    rows = {row.get_attribute("data-repo"): row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.repo")}
    assert "lab/segmenter-small" in rows and "0.4321" in rows["lab/segmenter-small"]
    assert "lab/hidden-model" not in rows
    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys("large")
    browser.find_element(By.ID, "apply").click()
    time.sleep(0.2)
    visit(browser, site, browser.current_url[len(site.url):], tmp_path, "search")
    rows = [row.get_attribute("data-repo") for row in browser.find_elements(By.CSS_SELECTOR, "tr.repo")]
    assert rows == ["lab/segmenter-large"]


def test_browser_model_page_image_loads(browser, site, tmp_path):
    visit(browser, site, "/lab/segmenter-small", tmp_path, "local-hub-model")
    width = browser.execute_script(
        "const img = document.querySelector('#card img');"
        "return img && img.complete ? img.naturalWidth : -1;")
    assert width == 40


def test_browser_evil_card_runs_nothing(browser, site, tmp_path):
    visit(browser, site, "/lab/evil-card", tmp_path, "evil-card")
    from selenium.webdriver.common.by import By

    for link in browser.find_elements(By.CSS_SELECTOR, "#card a"):
        link.click()
    state = browser.execute_script(
        "return {pwned: window.__pwned === undefined ? null : window.__pwned, title: document.title,"
        " scripts: document.scripts.length, handlers: document.querySelectorAll('[onerror]').length};")
    assert state == {"pwned": None, "title": "lab/evil-card - effhub local hub", "scripts": 0, "handlers": 0}
    assert "<script>" in browser.find_element(By.ID, "card").text


def test_browser_404_pages(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    for path, name in (("/lab/no-such-model", "missing"), ("/lab/hidden-model", "private")):
        visit(browser, site, path, tmp_path, name)
        assert browser.find_element(By.ID, "not-found").text.startswith("404")
