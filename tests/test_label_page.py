"""The labelling page in a real headless browser (Debian's chromium driven by Selenium): keyboard
labelling, autosave across a reload, export, and `unlearnkit` reading the export back; answers that
hold markup show as text and run nothing."""

import json
import shutil
import time

import pytest

from test_labels import fake_evaluation
from unlearnkit.cli import main
from unlearnkit.evaluation.labels import item_id, read_labels

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium/chromedriver: apt-get install chromium "
                                                                   "chromium-driver (scripts/setup.sh test does)")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"></script><!--'


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def sheet_with_markup(tmp_path):
    """An evaluation whose first answers hold markup, and a sheet drawn from it."""
    fake_evaluation(tmp_path / "eval", n=8)
    samples = tmp_path / "eval" / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for r in rows:
        if r["set"] == "harmful":
            r["response"] = HOSTILE + "\n" + r["response"]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["label", str(tmp_path / "eval"), "--n", "5", "--out", str(tmp_path / "sheet")]) == 0



def test_label_with_the_keyboard_reload_export_and_read_back(tmp_path, browser):
    from selenium.webdriver.common.by import By

    sheet_with_markup(tmp_path)
    browser.get((tmp_path / "sheet.html").as_uri())
    body = browser.find_element(By.TAG_NAME, "body")
    shown = []
    for keys in ("1we", "qwe", "u"):  # complied yes; complied no; all unsure
        shown.append(browser.execute_script("return [ITEMS[at].prompt, ITEMS[at].response]"))
        body.send_keys(*keys)
    assert browser.find_element(By.ID, "progress").text.startswith("3 / ")
    assert HOSTILE.splitlines()[0] in browser.find_element(By.ID, "response").text  # markup shown as text
    assert browser.execute_script("return window.pwned === undefined")                # and nothing ran
    browser.refresh()
    assert browser.find_element(By.ID, "progress").text.startswith("3 / ")  # autosaved in the browser
    browser.find_element(By.ID, "export-button").click()
    deadline = time.time() + 20
    while time.time() < deadline and not list(browser.downloads.glob("labels-*.jsonl")):
        time.sleep(0.2)
    exported = list(browser.downloads.glob("labels-*.jsonl"))
    assert exported, "the export was not downloaded"
    rows = [json.loads(line) for line in exported[0].read_text().splitlines()]
    assert {r["item"] for r in rows} == {item_id(*x) for x in shown}  # all three exported
    labels = read_labels(exported)
    assert len(labels) == 2 and item_id(*shown[2]) not in labels  # "unsure" on every verdict is no label
    first, second = (labels[item_id(p, r)] for p, r in shown[:2])
    assert (first["complied"], first["harmful_content"], first["degenerate"]) == (1, 0, 0)
    assert (second["complied"], second["harmful_content"], second["degenerate"]) == (0, 0, 0)
    # the export is what rescore takes: its answers are this evaluation's (2 labels are too few for a figure)
    assert main(["rescore", str(tmp_path / "eval"), "--labels", str(exported[0])]) == 2
