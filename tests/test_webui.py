"""The service's web page in a real headless browser (Debian's chromium, driven by Selenium).

``scripts/setup.sh`` installs chromium and chromium-driver; where they are absent these tests
skip, saying so.
"""

from __future__ import annotations

import shutil
import tempfile

import httpx
import pytest

from gallery_helpers import Server, blank_png, export_test_model, lfw_people

API_KEY = "webui-key-0123456789abcdef"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1000",
)

pytestmark = pytest.mark.slow


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "headless browser test needs Debian's chromium and chromium-driver "
            "(scripts/setup.sh installs them: apt-get install chromium chromium-driver)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _chromium()
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="mobileface-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir):
    _chromium()  # skip before starting anything
    model = export_test_model(tmp_path_factory.mktemp("model"))
    root = tmp_path_factory.mktemp("webui")
    with Server(
        root / "gallery.db", model, data_dir, "--require-auth", env={"MOBILEFACE_API_KEY": API_KEY}
    ) as running:
        yield running


def wait_result(driver, element_id: str, timeout: float = 60) -> str:
    """Wait until the result box says done or error; return its state."""
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element("id", element_id)
    WebDriverWait(driver, timeout).until(
        lambda _: box.get_attribute("data-state") in ("done", "error")
    )
    return box.get_attribute("data-state")


def test_verify_enrol_identify_from_the_page(browser, server, data_dir, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    people = lfw_people(data_dir, 3, min_images=3)
    (a, a_images), (b, b_images), _ = people
    by_id = lambda i: browser.find_element("id", i)  # noqa: E731

    browser.get(server.url + "/")
    assert browser.title == "mobileface"
    # Without the key the page says what is missing.
    WebDriverWait(browser, 30).until(lambda _: "API key" in by_id("info").text)

    by_id("api-key").send_keys(API_KEY)
    by_id("verify-a").send_keys(str(a_images[0]))
    by_id("verify-b").send_keys(str(a_images[0]))
    by_id("verify-submit").click()
    assert wait_result(browser, "verify-result") == "done"
    assert by_id("verify-score").text == "1.000"
    assert by_id("verify-decision").text == "same person"
    # The face found is drawn over each photo, and the aligned crops the model saw are shown.
    for side in ("a", "b"):
        WebDriverWait(browser, 30).until(
            lambda _, side=side: (
                by_id(f"verify-{side}-canvas").get_attribute("data-face") == "drawn"
            )
        )
        assert by_id(f"verify-{side}-canvas").get_attribute("width") == "250"
        assert by_id(f"verify-{side}-caption").text.startswith("face at ")
        crop = by_id(f"verify-{side}-crop")
        WebDriverWait(browser, 30).until(lambda _, crop=crop: crop.get_attribute("naturalWidth"))
        assert crop.is_displayed() and crop.get_attribute("naturalWidth") == "112"

    by_id("verify-b").send_keys(str(b_images[0]))
    by_id("verify-submit").click()
    assert wait_result(browser, "verify-result") == "done"
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60) as api:
        files = {
            "image_a": a_images[0].read_bytes(),
            "image_b": b_images[0].read_bytes(),
        }
        expected = api.post("/v1/verify", files=files).json()
    assert by_id("verify-score").text == f"{expected['score']:.3f}"
    assert by_id("verify-decision").text == (
        "same person" if expected["same"] else "different people"
    )

    for count, (name, images) in enumerate(((a, a_images), (b, b_images)), 1):
        by_id("enrol-name").clear()
        by_id("enrol-name").send_keys(name)
        by_id("enrol-images").send_keys("\n".join(str(p) for p in images[:2]))
        by_id("enrol-submit").click()
        assert wait_result(browser, "enrol-result") == "done"
        assert by_id("enrol-person-name").text == name
        assert "with 2 faces" in by_id("enrol-result").text
        if count == 1:
            WebDriverWait(browser, 30).until(lambda _: "1 person, 2 faces" in by_id("info").text)
    WebDriverWait(browser, 30).until(lambda _: "2 persons, 4 faces" in by_id("info").text)
    # The gallery section lists them.
    WebDriverWait(browser, 30).until(
        lambda _: len(browser.find_elements("css selector", "#persons-table tr.person")) == 2
    )
    listed = browser.find_elements("css selector", "#persons-table tr.person .name")
    assert [e.text for e in listed] == [a, b]

    by_id("identify-image").send_keys(str(b_images[1]))
    by_id("identify-submit").click()
    assert wait_result(browser, "identify-result") == "done"
    rows = browser.find_elements("css selector", "#identify-table tr.match")
    assert len(rows) == 2
    assert rows[0].find_element("css selector", ".name").text == b
    assert rows[0].find_element("css selector", ".score").text == "1.000"
    headings = browser.find_elements("css selector", "#identify-table th")
    assert [h.text for h in headings] == ["#", "name", "id", "score", "decision"]
    assert by_id("identify-verdict").text.startswith(b)
    WebDriverWait(browser, 30).until(
        lambda _: by_id("identify-canvas").get_attribute("data-face") == "drawn"
    )

    blank = blank_png(tmp_path / "blank.png")
    by_id("identify-image").send_keys(str(blank))
    by_id("identify-submit").click()
    assert wait_result(browser, "identify-result") == "error"
    assert "no face" in by_id("identify-result").text

    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=60) as api:
        names = [p["name"] for p in api.get("/v1/persons").json()["persons"]]
    assert names == [a, b]
