"""HTML report: one self-contained file, checked in a real headless Chromium: the page
loads offline, a click on the alpha header sorts the table, and a screenshot is taken."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import tailscope
from tailscope.cli import main
from tailscope.report.html import write_html

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("TAILSCOPE_SCREENSHOTS", "")) if os.environ.get("TAILSCOPE_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def page(tiny_mixtral_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert main(["report", str(tiny_mixtral_dir), "-o", str(out), "--quiet"]) == 0
    return out


def test_self_contained(page):
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing fetched
    assert text.count("data:image/png;base64,") == 2
    for section in ("Summary", "Architecture", "Warnings", "Experts", "Layers"):
        assert f"<h2>{section}" in text
    assert "46.7B" not in text and "active per token" in text  # the tiny Mixtral's own card
    assert "under-trained</b>" in text and "alpha &gt; 6" in text  # each warning explained


def _browser():
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing in CI (apt-get install chromium chromium-driver)")
        pytest.skip("chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1500,1100"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _alphas(driver, idx: int) -> list[float | None]:
    cells = driver.execute_script(
        "return [...document.querySelectorAll('#layers tbody tr')].map(r => r.children[arguments[0]].dataset.v)", idx)
    return [float(c) if c else None for c in cells]


def test_sort_in_chromium(page, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(page.as_uri())
        assert driver.title.startswith("tailscope")
        assert driver.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 300)")
        driver.save_screenshot(str((SHOTS or tmp_path) / "report_top.png"))
        headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#layers thead th")]
        idx = headers.index("alpha")
        before = _alphas(driver, idx)
        header = driver.find_elements(By.CSS_SELECTOR, "#layers thead th")[idx]
        header.click()
        asc = _alphas(driver, idx)
        nums = [a for a in asc if a is not None]
        assert asc != before and nums == sorted(nums) and asc[: len(nums)] == nums  # ascending, blanks last
        assert sorted(nums) == sorted(a for a in before if a is not None)
        header.click()
        desc = [a for a in _alphas(driver, idx) if a is not None]
        assert desc == sorted(nums, reverse=True)
        header.click()  # back to ascending for the screenshot
        shot = (SHOTS or tmp_path) / "report_sorted.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.execute_script("document.getElementById('layers').scrollIntoView()")
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_compare_html(tiny_mistral_dir, tiny_mixtral_dir, tmp_path):
    out = tmp_path / "c.html"
    assert main(["compare", str(tiny_mistral_dir), str(tiny_mixtral_dir), "--html", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 2 and 'id="matched"' in text
    assert 'id="cards"' in text and "mixtral (MixtralForCausalLM)" in text


def test_analyze_html_flag(tiny_mistral_dir, tmp_path):
    out = tmp_path / "a.html"
    assert main(["analyze", str(tiny_mistral_dir), "--html", str(out), "--quiet", "--layers", "mlp_down"]) == 0
    assert "mlp.down_proj" in out.read_text()
    rep = tailscope.analyze(tiny_mistral_dir, layers="attn_q", progress=False)
    assert write_html(rep, tmp_path / "b.html").read_text().count("<tr class=") == len(rep.details)
