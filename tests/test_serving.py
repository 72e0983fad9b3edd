"""Serving: artifacts that load without the data, the Python API, the CLI, the REST API and the web page.

The data is planted: half the users love the comedies (items 1-30) and hate the dramas (31-60), the
other half the reverse, so a folded-in user's recommendations have one right answer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from deepmovie.config import build_config
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run
from deepmovie.recommender import Recommender, UnknownIdError
from deepmovie.recommender.recommender import parse_ratings
from deepmovie.recommender.schemas import Movie
from deepmovie.serving.api import create_app

COMEDIES = range(1, 31)
LIKES_COMEDY = {"1": 5, "2": 5, "3": 4.5, "31": 1, "32": 1}
LIKES_DRAMA = {"1": 1, "2": 1.5, "31": 5, "32": 5, "33": 4}
FAST = {"optimizer": "adam", "lr": 0.03, "factors": 8, "epochs": 30}
PARAMS = {
    "biased-mf": FAST,
    "mf": FAST,
    "svdpp": FAST,
    "pmf": {"epochs": 8, "factors": 4},
    "bias": {},
    "global-mean": {},
    "deepmf": {"epochs": 3},
    "autorec": {"epochs": 3, "hidden": 16},
    "hybrid": {"epochs": 2, "factors": 8, "encoder_epochs": 2},
}


def write_planted(folder: Path, n_users: int = 80, n_items: int = 60, seed: int = 0) -> Path:
    """A MovieLens-style folder (ratings.csv, movies.csv) with two opposite tastes and genres."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, n_users + 1):
        for item in range(1, n_items + 1):
            if rng.random() < 0.5:
                liked = (item in COMEDIES) == (user % 2 == 1)
                rating = np.clip(np.round((4.5 if liked else 1.5) + rng.normal(0, 0.5)), 1, 5)
                lines.append(f"{user},{item},{rating:g},{len(lines)}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = ["movieId,title,genres"]
    for item in range(1, n_items + 1):
        kind, genres = ("Comedy", "Comedy") if item in COMEDIES else ("Drama", "Drama|Romance")
        movies.append(f"{item},{kind} {item} ({1990 + item % 20}),{genres}")
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_planted(tmp_path_factory.mktemp("planted") / "data")


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """``runs(model, **config)`` -> a trained run directory (each trained once per module)."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def train(model: str, **config) -> Path:
        key = f"{model}-{abs(hash(json.dumps(config, sort_keys=True)))}"
        if key not in done:
            params = {**PARAMS[model], **config.pop("params", {})}
            values = {"model": model, "data": str(data), "device": "cpu", "params": params, **config}
            run(build_config(values), root / key, quiet=True)
            done[key] = root / key
        return done[key]

    return train


@pytest.fixture(scope="module")
def bmf(runs) -> Recommender:
    return Recommender.load(runs("biased-mf"))


def test_a_run_loads_without_its_training_data(data, tmp_path):
    copy = shutil.copytree(data, tmp_path / "data")
    config = {"model": "pmf", "data": str(copy), "device": "cpu", "params": PARAMS["pmf"]}
    run(build_config(config), tmp_path / "run", quiet=True)
    shutil.rmtree(copy)
    recommender = Recommender.load(tmp_path / "run")
    assert recommender.describe()["model"] == "pmf"
    assert recommender.movie(0) == Movie(item=1, title="Comedy 1 (1991)", year=1991, genres=["Comedy"])
    assert recommender.artifacts.scale.high == 5
    assert recommender.recommend(1, k=3).items


def test_an_incompatible_artifact_version_is_refused_by_name(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs("biased-mf"), copy)
    manifest = json.loads((copy / "serving.json").read_text())
    (copy / "serving.json").write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(DeepMovieError, match=r"artifact format 99.*reads format 1"):
        Recommender.load(copy)
    (copy / "serving.json").unlink()
    with pytest.raises(DeepMovieError, match=r"no serving\.json"):
        Recommender.load(copy)


def test_weights_are_loaded_without_unpickling_code(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs("biased-mf"), copy)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    weights = (copy / "model.pt").read_bytes()
    torch.save({"format": 1, "model": "biased-mf", "state": Evil()}, copy / "model.pt")
    with pytest.raises(DeepMovieError, match="not a readable checkpoint"):
        Recommender.load(copy)
    assert not (Path.cwd() / "pwned").exists()
    (copy / "model.pt").write_bytes(weights)
    config = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(config.replace("factors: 8", "factors: 9"))
    with pytest.raises(
        DeepMovieError, match=r"model\.pt: does not fit this 'biased-mf' configuration \(size mismatch"
    ):
        Recommender.load(copy)


def test_seen_items_are_excluded_unless_asked(bmf):
    history = {m.item for m in bmf.history(1).ratings}
    result = bmf.recommend(1, k=60)
    assert history and not history & {m.item for m in result.items}
    assert result.excluded_seen == len(history)
    everything = bmf.recommend(1, k=60, exclude_seen=False)
    assert history <= {m.item for m in everything.items}
    scores = [m.rating for m in result.items]
    assert scores == sorted(scores, reverse=True)


def test_genre_and_year_filters(bmf):
    dramas = bmf.recommend(2, k=5, genres="romance")
    assert dramas.items and all("Romance" in m.genres for m in dramas.items)
    recent = bmf.recommend(2, k=50, min_year=2005)
    assert recent.items and all(m.year >= 2005 for m in recent.items)
    with pytest.raises(DeepMovieError, match="genre 'Western': unknown"):
        bmf.recommend(2, genres="Western")


@pytest.mark.parametrize("model", ["biased-mf", "svdpp", "pmf", "mf"])
def test_fold_in_recovers_a_planted_users_taste(runs, model):
    recommender = Recommender.load(runs(model))
    comedy_fan = recommender.recommend_new(LIKES_COMEDY, k=10)
    drama_fan = recommender.recommend_new(LIKES_DRAMA, k=10)
    assert comedy_fan.cold_start and comedy_fan.user is None and "ridge" in comedy_fan.method
    assert all(m.item in COMEDIES for m in comedy_fan.items)
    assert all(m.item not in COMEDIES for m in drama_fan.items)
    assert not {int(i) for i in LIKES_COMEDY} & {m.item for m in comedy_fan.items}


def test_cold_start_on_other_families_is_their_own_path_or_an_explicit_error(runs):
    user_autorec = Recommender.load(runs("autorec", params={"based": "user"}))
    assert user_autorec.recommend_new(LIKES_COMEDY, k=5).method == "autorec fold-in"
    item_autorec = Recommender.load(runs("autorec"))
    assert len(item_autorec.recommend(3, k=5).items) == 5  # predict reads the saved rows
    with pytest.raises(DeepMovieError, match="item-based autorec"):
        item_autorec.recommend_new(LIKES_COMEDY)
    deepmf = Recommender.load(runs("deepmf"))
    assert deepmf.recommend(3, k=5).method == "model scores"
    assert deepmf.similar(1, k=3).method == "co-ratings (cosine)"
    with pytest.raises(DeepMovieError, match="not supported for model 'deepmf'"):
        deepmf.recommend_new(LIKES_COMEDY)


def test_an_item_without_training_ratings_is_served_by_a_text_hybrid_only(data, tmp_path):
    """Item 60's ratings are all test rows: PMF knows nothing of it, the hybrid has its document."""
    lines = (data / "ratings.csv").read_text().splitlines()
    folder = shutil.copytree(data, tmp_path / "data")
    held = [line for line in lines[1:] if line.split(",")[1] == "60"]
    (folder / "ratings.csv").write_text("\n".join(line for line in lines if line not in held) + "\n")
    (tmp_path / "test.csv").write_text("\n".join([lines[0], *held]) + "\n")
    for model in ("pmf", "hybrid"):
        values = {"model": model, "data": str(folder), "test_file": str(tmp_path / "test.csv")}
        run(build_config({**values, "params": PARAMS[model]}), tmp_path / model, quiet=True)
    with pytest.raises(UnknownIdError, match="item 60: no training ratings"):
        Recommender.load(tmp_path / "pmf").predict(1, 60)
    hybrid = Recommender.load(tmp_path / "hybrid")
    assert 0.5 <= hybrid.predict(1, 60).rating <= 5
    assert 60 in [m.item for m in hybrid.recommend(2, k=60).items]


def test_unknown_users_and_items_are_explicit_errors(bmf):
    for call, pattern in [
        (lambda: bmf.predict(999, 1), "user 999: not an id"),
        (lambda: bmf.predict("abc", 1), "ids are integers"),
        (lambda: bmf.predict(1, 10**30), "item 1000000000000000000000000000000: not an id"),
        (lambda: bmf.similar(61), "item 61: not an id"),
        (lambda: bmf.recommend_new({"999": 5}), "item 999"),
    ]:
        with pytest.raises(UnknownIdError, match=pattern):
            call()
    with pytest.raises(DeepMovieError, match=r"outside 0\.5\.\.5"):
        bmf.recommend_new({"1": 7})


def test_similar_items_share_the_taste(bmf):
    result = bmf.similar(1, k=5)
    assert result.method == "item factors (cosine)"
    assert 1 not in {m.item for m in result.items}
    assert sum(m.item in COMEDIES for m in result.items) >= 4


def test_a_k_fold_run_is_served_one_fold_at_a_time(runs):
    out = runs("pmf", split="kfold:2")
    with pytest.raises(DeepMovieError, match="fold-0"):
        Recommender.load(out)
    assert Recommender.load(out / "fold-0").recommend(1, k=3).items


def test_parse_ratings():
    assert parse_ratings("1:5, 50:4.5") == {"1": 5.0, "50": 4.5}
    for bad in ("1:5,50", "1:x", ":4", "1:5,1:4"):
        with pytest.raises(DeepMovieError, match="--ratings"):
            parse_ratings(bad)


def test_concurrent_calls_answer_as_sequential_ones(bmf):
    calls = [
        lambda: bmf.recommend(1, k=10),
        lambda: bmf.recommend_new(LIKES_DRAMA, k=10),
        lambda: bmf.similar(5, k=10),
        lambda: bmf.recommend(4, k=10, genres="Comedy"),
    ] * 50
    expected = [c() for c in calls[:4]]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda c: c(), calls))
    assert all(r == expected[n % 4] for n, r in enumerate(results))


@pytest.fixture(scope="module")
def client(bmf) -> TestClient:
    return TestClient(create_app(bmf))


def test_api_answers(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "biased-mf" and health["cold_start"]
    rec = client.get("/recommend", params={"user": 1, "k": 3}).json()
    assert len(rec["items"]) == 3 and rec["items"][0]["title"]
    cold = client.post(
        "/recommend", json={"ratings": [{"item": 31, "rating": 5}, {"item": "32", "rating": 4}]}
    )
    assert cold.status_code == 200 and all(m["item"] > 30 for m in cold.json()["items"])
    assert client.get("/predict", params={"user": 1, "item": 2}).json()["rating"] > 0
    assert client.get("/similar", params={"item": 1, "k": 2}).json()["items"]
    assert client.get("/users/1/ratings").json()["ratings"]
    assert client.get("/items/search", params={"q": "drama 4"}).json()[0]["item"] in range(40, 50)
    assert "/recommend" in client.get("/openapi.json").json()["paths"]
    assert "<title>DeepMovie</title>" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("get", "/recommend", {"user": 999}, 404),
        ("get", "/recommend", {"user": "x" * 65}, 422),
        ("get", "/recommend", {}, 422),
        ("get", "/recommend", {"user": 1, "k": 0}, 422),
        ("get", "/recommend", {"user": 1, "k": "ten"}, 422),
        ("get", "/recommend", {"user": 1, "genre": "Western"}, 400),
        ("get", "/predict", {"user": 1, "item": "1e3"}, 404),
        ("get", "/similar", {"item": 1, "k": 10**9}, 422),
        ("get", "/items/search", {"q": ""}, 422),
        ("get", "/users/999/ratings", None, 404),
        ("post", "/recommend", {"ratings": []}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 9}]}, 400),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}, {"item": "1", "rating": 3}]}, 400),
        ("post", "/recommend", {"ratings": [{"item": 1}]}, 422),
        ("post", "/recommend", {"ratings": "1:5"}, 422),
    ],
)
def test_api_bad_requests_are_4xx_json(client, method, path, payload, status):
    response = client.get(path, params=payload) if method == "get" else client.post(path, json=payload)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_api_refuses_non_json_and_nan(client):
    for body in ("not json", '{"ratings": [{"item": 1, "rating": NaN}]}'):
        response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text


def test_cli_recommend_cold_start_and_one_line_errors(runs, deepmovie_home):
    out = str(runs("biased-mf"))
    env = {**os.environ, "DEEPMOVIE_HOME": str(deepmovie_home)}
    commands = [
        ["recommend", out, "--ratings", "31:5,32:5", "-k", "3", "--json"],
        ["similar", out, "--item", "999"],
    ]
    started = [  # both at once: each spends its first seconds importing PyTorch
        subprocess.Popen(
            [sys.executable, "-m", "deepmovie", *c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c in commands
    ]
    (good, good_err), (_, bad_err) = (p.communicate(timeout=120) for p in started)
    assert started[0].returncode == 0, good_err
    result = json.loads(good)
    assert result["cold_start"] and len(result["items"]) == 3
    assert started[1].returncode == 2
    assert bad_err.strip().splitlines() == ["error: item 999: not an id of this model (60 items)"]


@pytest.fixture(scope="module")
def server(bmf):
    """The app under a real uvicorn server in a thread, on a free port."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(
        uvicorn.Config(create_app(bmf), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def test_server_under_concurrent_clients(server):
    import httpx

    def burst(user: int) -> list[int]:
        with httpx.Client(base_url=server, timeout=30) as http:
            answers = [http.get("/recommend", params={"user": user, "k": 5}) for _ in range(10)]
        assert all(a.status_code == 200 for a in answers)
        return [m["item"] for m in answers[-1].json()["items"]]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(burst, [1 + n % 5 for n in range(40)]))
    assert all(results[n] == results[n % 5] for n in range(40))


def _chromium() -> tuple[str, str] | None:
    for browser in (
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        driver = shutil.which("chromedriver")
        if browser and os.path.exists(browser) and driver:
            return browser, driver
    return None


def test_web_page_end_to_end_in_headless_chromium(server):
    """Search and rate, get recommendations with titles and stars; look up a user's history."""
    found = _chromium()
    if found is None:
        pytest.skip(
            "no chromium + chromedriver here (CI installs Debian's: apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    wait = WebDriverWait(browser, 20)
    try:
        browser.get(server + "/")
        wait.until(lambda b: "biased-mf" in b.find_element(By.ID, "model").text)
        for query, stars in (("Drama 3", "5"), ("Comedy 2", "1")):
            search = browser.find_element(By.ID, "search")
            search.clear()
            search.send_keys(query)
            browser.find_element(By.ID, "search-button").click()
            wait.until(lambda b, q=query: q in b.find_element(By.ID, "search-results").text)
            Select(browser.find_element(By.CSS_SELECTOR, "#search-results select")).select_by_value(stars)
        browser.find_element(By.ID, "recommend-new").click()
        rows = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#new-recs tbody tr"))
        assert len(rows) == 10
        titles = [r.find_element(By.CLASS_NAME, "title").text for r in rows]
        assert all(t.startswith("Drama") for t in titles), titles
        assert all("★" in r.find_element(By.CLASS_NAME, "stars").text for r in rows)
        assert "Romance" in rows[0].find_element(By.CLASS_NAME, "genres").text

        browser.find_element(By.ID, "user").send_keys("2")
        browser.find_element(By.ID, "user-button").click()
        history = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-history tbody tr"))
        assert history and wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-recs tbody tr"))
        browser.find_element(By.ID, "user").clear()
        browser.find_element(By.ID, "user").send_keys("999")
        browser.find_element(By.ID, "user-button").click()
        wait.until(lambda b: "user 999" in b.find_element(By.ID, "error").text)
    finally:
        browser.quit()
