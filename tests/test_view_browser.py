"""The viewer page in a real browser (headless Chromium through Selenium and the system chromedriver).

For a small real training run and an evaluation it applies filters, opens a dialogue, and checks
that every message, emotion and flag shown is the JSONL's and that the filtered count is the one
computed in Python. Without Chromium the tests skip and say why; under CI (CI=true) a missing
browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agents.view.cli import write_view
from agents.view.data import dialogue_row, filter_rows, search_text
from sage_gym.transcripts import read_jsonl
from tests.test_view import evaluation, training_run  # noqa: F401  (fixtures)
from tests.tiny import one_thread, tokenizer  # noqa: F401  (fixtures)

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000",
)


def _missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium on PATH (Debian: apt-get install chromium chromium-driver)"
    if not Path(CHROMEDRIVER).is_file():
        return f"no {CHROMEDRIVER} (Debian: apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing_browser()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    profile = tempfile.mkdtemp(prefix="viewer-test-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # never Selenium Manager: no download
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, page: Path, hash_: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri() + hash_)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready"))
    assert driver.execute_script("return document.body.dataset.ready") == "1", driver.find_element("id", "status").text


def choose(driver, name: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", f'select[data-filter="{name}"]')).select_by_value(value)


def text_of(element) -> str:
    return element.get_property("textContent")


def python_rows(path: Path) -> list[dict]:
    return [{**dialogue_row(r), "text": search_text(r)} for r in read_jsonl(path / "transcripts.jsonl")]


def shown_count(driver) -> int:
    return int(driver.find_element("id", "count").text.split(" of ")[0])


def assert_dialogue_shown_as_recorded(driver, record: dict) -> None:
    """Every message, emotion, reward, hidden thought, strategy and flag of the open dialogue is the record's."""
    pane = driver.find_element("css selector", "#dialogue .dialogue")
    assert text_of(pane.find_element("css selector", ".first-message")) == record["first_message"]
    assert text_of(pane.find_element("css selector", ".final")) == str(record["final_emotion"])
    assert text_of(pane.find_element("css selector", ".outcome")) == record["outcome"]
    turns = pane.find_elements("css selector", ".turn")
    assert len(turns) == len(record["turns"])
    for shown, turn in zip(turns, record["turns"]):
        assert text_of(shown.find_element("css selector", ".agent-text")) == turn["agent_reply"]
        assert text_of(shown.find_element("css selector", ".user-text")) == turn["user_reply"]
        assert text_of(shown.find_element("css selector", ".emotion")) == str(turn["emotion"])
        assert float(text_of(shown.find_element("css selector", ".reward"))) == pytest.approx(turn["reward"], abs=5e-4)
        if turn.get("thoughts"):
            assert text_of(shown.find_element("css selector", ".thoughts")) == turn["thoughts"]
        assert [text_of(c) for c in shown.find_elements("css selector", ".chip.flag")] == turn["analysis"]["flags"]
        assert [text_of(c) for c in shown.find_elements("css selector", ".chip.analysis-strategy")] == turn["analysis"]["strategies"]
        if "strategies" in turn:  # the evaluator's tagger, as recorded
            assert [text_of(c) for c in shown.find_elements("css selector", ".chip.tag")] == turn["strategies"]


def test_a_training_run_filters_to_the_python_count_and_shows_a_dialogue_as_recorded(browser, training_run) -> None:  # noqa: F811
    page = write_view([training_run])
    records = list(read_jsonl(training_run / "transcripts.jsonl"))
    rows = python_rows(training_run)
    open_page(browser, page)
    assert shown_count(browser) == len(records)

    step = str(records[-1]["step"])
    choose(browser, "step", step)
    wanted = filter_rows(rows, step=int(step))
    assert shown_count(browser) == len(wanted) > 0
    intention = wanted[0]["intention"]
    choose(browser, "intention", intention)
    wanted = filter_rows(rows, step=int(step), intention=intention)
    assert shown_count(browser) == len(wanted) > 0
    ids = [r.get_attribute("data-id") for r in browser.find_elements("css selector", "#dialogues tr.row")]
    expected = [f"0.{i}" for i, record in enumerate(records) if record["step"] == int(step) and record["hidden_intention"] == intention]
    assert ids == expected

    browser.find_element("css selector", f'#dialogues tr.row[data-id="{ids[-1]}"]').click()
    record = records[int(ids[-1].split(".")[1])]
    assert_dialogue_shown_as_recorded(browser, record)

    # the state is in the URL: the same link shows the same filters and dialogue
    link = browser.current_url
    assert "open=" in link and f"step={step}" in link
    browser.get("about:blank")
    browser.get(link)
    open_page(browser, page, "#" + link.split("#", 1)[1])
    assert shown_count(browser) == len(wanted)
    assert_dialogue_shown_as_recorded(browser, record)

    # before and after: one row per scenario played at two or more steps
    browser.find_element("css selector", 'nav button[data-view="pairs"]').click()
    steps_by_scenario: dict[str, set[int]] = {}
    for r in records:
        steps_by_scenario.setdefault(r["scenario_id"], set()).add(r["step"])
    assert len(browser.find_elements("css selector", "#pairs tr.row")) == sum(len(s) > 1 for s in steps_by_scenario.values())


def test_an_evaluation_filters_by_text_strategy_and_flag_like_python(browser, evaluation, tmp_path) -> None:  # noqa: F811
    page = write_view([evaluation], tmp_path / "eval.html")
    records = list(read_jsonl(evaluation / "transcripts.jsonl"))
    rows = python_rows(evaluation)
    open_page(browser, page)
    word = records[1]["turns"][0]["user_reply"].split()[-1].strip(".,!?").lower()
    browser.find_element("css selector", 'input[data-filter="q"]').send_keys(word, "\n")
    assert shown_count(browser) == len(filter_rows(rows, text=word)) > 0

    browser.find_element("css selector", 'input[data-filter="q"]').clear()
    browser.find_element("css selector", 'input[data-filter="q"]').send_keys("\n")
    choose(browser, "strategy", "tagger:validation")
    assert shown_count(browser) == len(filter_rows(rows, strategy="validation"))
    choose(browser, "strategy", "")
    flags = sorted({f for r in rows for f in r["flags"]})
    for flag in flags[:2]:
        choose(browser, "flag", flag)
        assert shown_count(browser) == len(filter_rows(rows, flag=flag)) > 0
    choose(browser, "flag", "")
    choose(browser, "sort", "final-asc")
    finals = [float(r.find_elements("css selector", "td")[6].text.split("→")[1]) for r in browser.find_elements("css selector", "#dialogues tr.row")]
    assert finals == sorted(finals) and len(finals) == len(records)

    first = browser.find_element("css selector", "#dialogues tr.row")
    opened = int(first.get_attribute("data-id").split(".")[1])
    first.click()
    assert_dialogue_shown_as_recorded(browser, records[opened])
    # the scenario card is folded and joined from the split
    card = browser.find_element("css selector", "#dialogue details.scenario")
    assert card.get_attribute("open") is None
    card.click()
    assert records[opened]["hidden_intention"] in card.text and "persona" in card.text


def test_two_folders_pair_the_same_scenario_and_seed(browser, evaluation, tmp_path) -> None:  # noqa: F811
    from agents.evaluate import main as evaluate

    other = tmp_path / "solution"
    evaluate(["--agent", "solution", "--limit", "4", "--trials", "2", "--output", str(other), "--no-progress", "--no-plots"])
    page = write_view([evaluation, other], tmp_path / "pair.html")
    open_page(browser, page, "#view=pairs")
    left = {(r["scenario_id"], r["seed"]): r for r in read_jsonl(evaluation / "transcripts.jsonl")}
    right = {(r["scenario_id"], r["seed"]): r for r in read_jsonl(other / "transcripts.jsonl")}
    shared = set(left) & set(right)
    rows = browser.find_elements("css selector", "#pairs tr.row")
    assert len(rows) == len(shared) > 0
    shown = sorted(float(r.find_elements("css selector", "td")[5].text) for r in rows)
    assert shown == sorted(float(right[k]["final_emotion"] - left[k]["final_emotion"]) for k in shared)
    rows[0].click()
    assert len(browser.find_elements("css selector", "#pair .dialogue")) == 2


def test_model_output_is_shown_as_text_never_as_html(browser, evaluation, tmp_path) -> None:  # noqa: F811
    hostile = '</script><img src=x onerror="document.title=\'owned\'"><!-- \u2028 <b>bold</b>'
    folder = tmp_path / "hostile"
    folder.mkdir()
    with (folder / "transcripts.jsonl").open("w") as out:
        for record in read_jsonl(evaluation / "transcripts.jsonl"):
            record["turns"][0]["agent_reply"] = hostile
            record["turns"][0]["user_reply"] = hostile
            out.write(json.dumps(record) + "\n")
    open_page(browser, write_view([folder]), "#open=0.0")
    bubble = browser.find_element("css selector", "#dialogue .turn .agent-text")
    assert text_of(bubble) == hostile
    assert not browser.find_elements("css selector", "#dialogue img, #dialogue .bubble *")  # a bubble holds text only
    assert browser.title != "owned"
