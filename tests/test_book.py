"""The notebooks as a book (`make book`): built from the committed notebooks without running them,
then every page opened in headless Chromium, served over HTTP from this machine as a static host
would, and checked as a reader would see it: the page loads, the console stays clean, every figure
loads, the maths is typeset, and every link inside the site leads somewhere.

Nothing outside this machine is reachable here, so resources outside the site (the Colab badge
image in the README and the notebooks, external links) are left out of the checks on purpose:
only what the site itself serves must load.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`; .ci/run
installs them). Without them the browser checks fail under CI (CI=true) and are skipped elsewhere,
saying how to install them."""

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import REPO

OUT = REPO / "_build" / "test-book"  # git-ignored; the screenshots are kept in OUT / "screenshots"
BUILD = ["build", ".", "--config", "book/_config.yml", "--toc", "book/_toc.yml", "-W", "--keep-going"]
CHAPTERS = [c["file"] for c in yaml.safe_load((REPO / "book" / "_toc.yml").read_text())["chapters"]]
# Raw TeX a reader should never see: MathJax replaces every formula it typesets.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")
# Runs in the page once MathJax has typeset it (or failed to); returns what the checks need.
INSPECT = """
const done = arguments[arguments.length - 1];
const typeset = window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve();
typeset.then(() => null, (e) => String(e)).then((mathjaxError) => {
  const local = (url) => url.startsWith(location.origin);
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, mjx-container").forEach((e) => e.remove());
  done({
    mathjaxError,
    brokenImages: [...document.images]
      .filter((i) => local(i.src) && (!i.complete || i.naturalWidth === 0)).map((i) => i.src),
    links: [...document.links].map((a) => a.href).filter(local),
    ids: [...document.querySelectorAll("[id]")].map((e) => e.id),
    formulas: document.querySelectorAll(".math").length,
    untypeset: [...document.querySelectorAll(".math")].filter((e) => !e.querySelector("mjx-container"))
      .map((e) => e.textContent.slice(0, 80)),
    prose: prose.textContent,
  });
});
"""


def repo_url():
    """The repository's URL, from the REPO_URL line of the notebooks' first code cell."""
    nb = json.loads((REPO / "Basic_VAE.ipynb").read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    return re.search(r'^REPO_URL = "([^"]+)"$', first, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def site():
    """The book, built as `make book` builds it, into OUT (about 15 s)."""
    shutil.rmtree(OUT, ignore_errors=True)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    build = subprocess.run(
        [jupyter_book, *BUILD, "--path-output", OUT], cwd=REPO, capture_output=True, text=True
    )
    assert build.returncode == 0, (
        f"the book does not build cleanly:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    )
    return OUT / "_build" / "html"


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site and records the status of every request."""

    def log_request(self, code="-", size="-"):
        self.server.requests.append((urlsplit(self.path).path, int(code)))

    def log_message(self, *args):
        pass


@contextmanager
def serve(folder):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        why = "the book's browser checks need Chromium: apt-get install -y chromium chromium-driver"
        pytest.fail(why) if os.environ.get("CI") == "true" else pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager would try to download one.
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    chrome.set_script_timeout(60)
    yield chrome
    chrome.quit()


def screenshot(browser, stem):
    """The top of the page, then its first formula and its first figure, as a reader scrolls on."""
    browser.save_screenshot(f"{stem}.png")
    for what, selector in (("maths", "div.math"), ("figure", "main img[src^='_images/']")):
        found = browser.find_elements("css selector", selector)
        if found:
            browser.execute_script("arguments[0].scrollIntoView()", found[0])
            browser.save_screenshot(f"{stem}-{what}.png")


def console_errors(browser, base):
    """The page's console errors, less those about resources outside the site (the Colab badge
    cannot load offline: not the site's fault) and about /favicon.ico, which the browser asks for
    on its own (the book has none)."""
    for entry in browser.get_log("browser"):
        message = entry["message"]
        outside = re.match(r"https?://", message) and not message.startswith(base)
        if entry["level"] == "SEVERE" and not outside and not message.startswith(base + "favicon.ico"):
            yield message


def page_problems(seen):
    """What is wrong with a page, from what INSPECT saw in it."""
    if seen["mathjaxError"]:
        yield f"MathJax failed: {seen['mathjaxError']}"
    if seen["untypeset"]:
        yield f"{len(seen['untypeset'])} formulas not typeset, e.g. {seen['untypeset'][0]!r}"
    if raw := RAW_TEX.search(seen["prose"]):
        yield f"raw TeX in the text: {seen['prose'][raw.start() :][:80]!r}"
    yield from (f"image did not load: {src}" for src in seen["brokenImages"])


def check_site(folder, browser, pages=None, screenshots=None):
    """Open each page of the site in `folder` (all by default). Returns the problems found, and
    how many formulas each page typeset; `screenshots` maps pages to file stems for screenshot()."""
    pages = pages or sorted(p.name for p in folder.glob("*.html"))
    problems, ids, links, typeset = [], {}, [], {}
    with serve(folder) as server:
        base = f"http://127.0.0.1:{server.server_port}/"
        for page in pages:
            redirect = re.search(
                r'http-equiv="refresh" content="0; url=([^"]+)"', (folder / page).read_text()
            )
            if redirect:  # index.html sends the reader on to the README's page: check where to
                links.append((page, base + redirect.group(1)))
                continue
            browser.get_log("browser")  # forget what earlier pages logged
            browser.get(base + page)
            seen = browser.execute_async_script(INSPECT)
            if page in (screenshots or {}):
                screenshot(browser, screenshots[page])
            problems += [f"{page}: console error: {message}" for message in console_errors(browser, base)]
            problems += [f"{page}: {problem}" for problem in page_problems(seen)]
            typeset[page] = seen["formulas"] - len(seen["untypeset"])
            ids[page] = set(seen["ids"])
            links += [(page, link) for link in seen["links"]]
        # Every request to the site, for the pages themselves and for what they load.
        failed = [(path, code) for path, code in server.requests if code >= 400 and path != "/favicon.ico"]
        problems += [f"{path}: HTTP {code}" for path, code in failed]
    for page, link in links:
        url = urlsplit(link)
        target = unquote(url.path.lstrip("/")) or "index.html"
        if not (folder / target).is_file():
            problems.append(f"{page}: link to a missing page or file: {target}")
        elif url.fragment and target in ids and unquote(url.fragment) not in ids[target]:
            problems.append(f"{page}: link to a missing anchor: {target}#{url.fragment}")
    return sorted(set(problems)), typeset


def test_toc_has_every_notebook_in_reading_order():
    notebooks = sorted(p.stem for p in REPO.glob("*.ipynb"))
    assert sorted(CHAPTERS) == notebooks, "book/_toc.yml lists every notebook once"
    assert CHAPTERS[0] == "Basic_VAE" and CHAPTERS[-1] == "Comparison"


def test_book_config_uses_the_notebooks_repository_url():
    config = yaml.safe_load((REPO / "book" / "_config.yml").read_text())
    assert config["repository"] == {"url": repo_url(), "branch": "main", "path_to_book": ""}
    assert config["execute"]["execute_notebooks"] == "off", "the book shows the committed default runs"


def test_every_chapter_opens_on_colab_and_downloads(site):
    colab = repo_url().replace("https://github.com/", "https://colab.research.google.com/github/")
    for chapter in CHAPTERS:
        html = (site / f"{chapter}.html").read_text()
        assert f'href="{colab}/blob/main/{chapter}.ipynb"' in html, f"{chapter}: no Colab launch button"
        assert f'href="_sources/{chapter}.ipynb"' in html, f"{chapter}: no download link"
        assert (site / "_sources" / f"{chapter}.ipynb").is_file()
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is served from the site"


def test_every_page_renders_in_a_browser(site, browser):
    shots = OUT / "screenshots"
    shots.mkdir(exist_ok=True)
    problems, typeset = check_site(
        site, browser, screenshots={"README.html": shots / "landing", "Basic_VAE.html": shots / "chapter"}
    )
    print(f"screenshots of the landing page and a chapter: {shots}")
    assert not problems, "\n".join(problems)
    untypeset = [chapter for chapter in CHAPTERS if typeset[f"{chapter}.html"] == 0]
    assert not untypeset, f"every chapter has maths, but MathJax typeset none in {untypeset}"
    assert {"landing.png", "chapter.png"} <= {path.name for path in shots.iterdir()}


def test_the_checks_catch_a_missing_figure_a_broken_link_and_untypeset_maths(site, browser, tmp_path):
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    (broken / "_images" / "basic_vae_samples.png").unlink()  # in the README's gallery
    readme = broken / "README.html"
    readme.write_text(readme.read_text().replace('href="IWAE.html"', 'href="IWAE_gone.html"', 1))
    (broken / "_static" / "mathjax" / "tex-chtml.js").unlink()
    problems, _ = check_site(broken, browser, pages=["README.html", "Basic_VAE.html"])
    problems = "\n".join(problems)
    assert "image did not load: " in problems and "basic_vae_samples.png" in problems, problems
    assert "README.html: link to a missing page or file: IWAE_gone.html" in problems, problems
    assert re.search(r"Basic_VAE.html: \d+ formulas not typeset", problems), problems
