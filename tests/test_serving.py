"""Serving: artifacts that load without the data, the Python API, the CLI, the REST API and the web page.

The data is planted: half the users love the comedies (items 1-30) and hate the dramas (31-60), the
other half the reverse, so a folded-in user's recommendations have one right answer.
"""

from __future__ import annotations

import asyncio
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
from fastapi.responses import Response
from fastapi.testclient import TestClient

from deepmovie.config import build_config
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run
from deepmovie.recommender import Recommender, UnknownIdError
from deepmovie.recommender.recommender import parse_ratings
from deepmovie.recommender.schemas import Movie
from deepmovie.serving.api import (
    MAX_BODY,
    MAX_K,
    RATER_ENV,
    BodyLimit,
    QueryRoute,
    app_from_env,
    create_app,
    load_recommender,
    serve_env,
)

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


def test_api_answers(client, bmf):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "biased-mf" and health["cold_start"]
    assert health["ranker"] == health["rater"] == "biased-mf" and health["rater_cold_start"]
    assert health["limits"] == {"max_body": MAX_BODY, "max_k": MAX_K, "max_ratings": 1000}
    inline = health["inline"]  # a factor model's lists without reasons: on the event loop
    assert inline["known_user"] and inline["new_user"]
    assert set(inline) == {"known_user", "known_user_explained", "new_user", "new_user_explained"}
    rec = client.get("/recommend", params={"user": 1, "k": 3}).json()
    assert len(rec["items"]) == 3 and rec["items"][0]["title"]
    assert rec["ranker"] == rec["rater"] == "biased-mf" and rec["offset"] == 0
    cold = client.post(
        "/recommend", json={"ratings": [{"item": 31, "rating": 5}, {"item": "32", "rating": 4}]}
    )
    assert cold.status_code == 200 and all(m["item"] > 30 for m in cold.json()["items"])
    assert all(m["because"] for m in cold.json()["items"])
    assert client.get("/predict", params={"user": 1, "item": 2}).json()["rating"] > 0
    similar = client.get("/similar", params={"item": 1, "k": 2}).json()
    assert similar == json.loads(bmf.similar(1, k=2).model_dump_json())
    assert client.get("/users/1/ratings").json()["ratings"]
    assert client.get("/items/search", params={"q": "drama 4"}).json()[0]["item"] in range(40, 50)
    assert "/recommend" in client.get("/openapi.json").json()["paths"]
    assert "<title>DeepMovie</title>" in client.get("/").text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("get", "/recommend", {"user": 999}, 404),
        ("get", "/recommend", {"user": "x" * 65}, 422),
        ("get", "/recommend", {}, 422),
        ("get", "/recommend", {"user": 1, "k": 0}, 422),
        ("get", "/recommend", {"user": 1, "k": "ten"}, 422),
        ("get", "/recommend", {"user": 1, "k": MAX_K + 1}, 422),
        ("get", "/recommend", {"user": 1, "offset": -1}, 422),
        ("get", "/recommend", {"user": 1, "diversity": 1.5}, 422),
        ("get", "/recommend", {"user": 1, "max_per_genre": 0}, 422),
        ("get", "/recommend", {"user": 1, "min_ratings": -1}, 422),
        ("get", "/recommend", {"user": 1, "genre": "Western"}, 400),
        ("get", "/recommend", {"user": 1, "genres": ["Comedy", "Western"]}, 400),
        ("get", "/recommend", {"user": 1, "exclude": 999}, 404),
        ("get", "/predict", {"user": 1, "item": "1e3"}, 404),
        ("get", "/similar", {"item": 1, "k": 10**9}, 422),
        ("get", "/similar", {"item": 1, "k": MAX_K + 1}, 422),
        ("get", "/items/search", {"q": ""}, 422),
        ("get", "/users/999/ratings", None, 404),
        ("get", "/no/such/route", None, 404),
        ("get", "/static/no-such-file.js", None, 404),
        ("delete", "/recommend", None, 405),
        ("put", "/health", None, 405),
        ("post", "/recommend", {"ratings": []}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 9}]}, 400),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}, {"item": "1", "rating": 3}]}, 400),
        ("post", "/recommend", {"ratings": [{"item": 1}]}, 422),
        ("post", "/recommend", {"ratings": "1:5"}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}], "k": MAX_K + 1}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}], "offset": -1}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}], "diversity": 2}, 422),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}], "genres": ["Western"]}, 400),
        ("post", "/recommend", {"ratings": [{"item": 1, "rating": 4}], "no_such_field": 1}, 422),
        ("post", "/health", {}, 405),
    ],
)
def test_api_bad_requests_are_4xx_json(client, method, path, payload, status):
    if method == "get":
        response = client.get(path, params=payload)
    elif method == "post":
        response = client.post(path, json=payload)
    else:
        response = client.request(method.upper(), path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]
    if status == 405:
        assert "allow" in response.headers


def test_api_refuses_non_json_and_nan(client):
    for body, status in (("not json", 400), ('{"ratings": [{"item": 1, "rating": NaN}]}', 422)):
        response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert response.json()["detail"]


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


def test_a_body_over_the_limit_is_refused_with_413_before_parsing(client, bmf):
    two_mb = b'{"ratings": [' + b" " * 2_000_000 + b"]}"
    declared = client.post("/recommend", content=two_mb, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["detail"].startswith("request body of 2,000,")

    def chunks():  # no Content-Length: the body is counted as it streams
        for _ in range(20):
            yield b" " * 100_000

    streamed = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "streamed past 1,000,000 bytes" in streamed.json()["detail"]
    small = TestClient(create_app(bmf, max_body=1_000))
    ratings = [{"item": i, "rating": 4} for i in range(1, 61)]
    assert small.post("/recommend", json={"ratings": ratings[:5]}).status_code == 200
    assert small.post("/recommend", json={"ratings": ratings}).status_code == 413
    with pytest.raises(DeepMovieError, match="max_body: 0"):
        create_app(bmf, max_body=0)


def test_body_limit_counts_streamed_bytes_and_never_calls_the_app_past_it():
    calls = []

    async def app(scope, receive, send):
        message = await receive()
        calls.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def request(parts: list[bytes], headers: list[tuple[bytes, bytes]]) -> list[dict]:
        messages = [
            {"type": "http.request", "body": p, "more_body": n < len(parts) - 1} for n, p in enumerate(parts)
        ]
        sent: list[dict] = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        asyncio.run(BodyLimit(app, limit=1000)(scope, receive, send))
        return sent

    chunked = [(b"transfer-encoding", b"chunked")]
    refused = request([b"x" * 400] * 3, chunked)
    assert refused[0]["status"] == 413 and not calls
    assert json.loads(refused[1]["body"])["detail"] == "request body streamed past 1,000 bytes: at most that"
    assert request([b"x" * 400] * 3, [(b"content-length", b"1200")])[0]["status"] == 413 and not calls
    assert request([b"x" * 400, b"y" * 600], chunked)[0]["status"] == 200
    assert calls == [b"x" * 400 + b"y" * 600]  # the app gets the whole body at once


def test_head_answers_every_get_route_as_get_does_without_a_body(client):
    """Same status and headers as GET, no body: for every GET route of the app, found and not."""
    targets = {
        "/health": "/health",
        "/predict": "/predict?user=1&item=2",
        "/recommend": "/recommend?user=1&k=3",
        "/similar": "/similar?item=1&k=2",
        "/users/{user}/ratings": "/users/1/ratings",
        "/items/search": "/items/search?q=drama",
        "/": "/",
        "/openapi.json": "/openapi.json",
        "/docs": "/docs",
        "/docs/oauth2-redirect": "/docs/oauth2-redirect",
        "/redoc": "/redoc",
    }
    get_routes = {r.path for r in client.app.routes if "GET" in getattr(r, "methods", ())}
    assert get_routes == set(targets)  # a new GET route needs a case here
    failing = ["/recommend?user=999", "/recommend?user=1&k=true", "/no/such/route", "/static/no-such.js"]
    for path in [*targets.values(), "/static/app.js", *failing]:
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"" and get.content, path
        assert head.headers == get.headers, path
    assert client.head("/health").headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k": True}, "k"),
        ({"k": 1.5}, "k"),
        ({"k": 1.0}, "k"),
        ({"k": "10"}, "k"),
        ({"offset": False}, "offset"),
        ({"min_year": "1990"}, "min_year"),
        ({"max_per_genre": 2.0}, "max_per_genre"),
        ({"min_ratings": True}, "min_ratings"),
        ({"diversity": True}, "diversity"),
        ({"diversity": "0.5"}, "diversity"),
        ({"explain": 1}, "explain"),
        ({"exclude": [True]}, "exclude"),
        ({"ratings": [{"item": 31, "rating": True}]}, "rating"),
        ({"ratings": [{"item": 31, "rating": "4"}]}, "rating"),
        ({"ratings": [{"item": True, "rating": 4}]}, "item"),
        ({"ratings": [{"item": 31.0, "rating": 4}]}, "item"),
    ],
)
def test_a_body_takes_numbers_only_as_numbers_of_their_kind(client, change, field):
    """No boolean is read as 1, no "10" as 10, no 1.0 as 1: a 422 that names the field."""
    response = client.post("/recommend", json={"ratings": [{"item": 31, "rating": 4}], **change})
    assert response.status_code == 422, response.text
    assert all(field in error["loc"] for error in response.json()["detail"])


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/recommend?user=1", "k", "true"),
        ("/recommend?user=1", "k", "1.5"),
        ("/recommend?user=1", "k", "1.0"),
        ("/recommend?user=1", "k", " 10"),
        ("/recommend?user=1", "offset", "1_000"),
        ("/recommend?user=1", "min_year", "1e3"),
        ("/recommend?user=1", "max_per_genre", "%2B2"),
        ("/recommend?user=1", "min_ratings", "false"),
        ("/recommend?user=1", "diversity", "true"),
        ("/similar?item=1", "k", "2.0"),
        ("/items/search?q=drama", "limit", "true"),
    ],
)
def test_a_query_takes_integers_in_plain_digits_only(client, path, field, value):
    response = client.get(f"{path}&{field}={value}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_integers_in_their_own_form_are_still_taken(client):
    assert client.get("/recommend?user=1&k=10&offset=0&min_year=1990").status_code == 200
    body = {"ratings": [{"item": 31, "rating": 4}, {"item": "32", "rating": 4.5}], "k": 10, "diversity": 0}
    assert client.post("/recommend", json=body).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"ratings": [{"item": 1, "rating": 4}],}',
        b"{'ratings': []}",
        b'{"ratings": [{"item": 1, "rating": 4}]}\xff',
        b'{"ratings": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # past Python's nesting depth
        b'{"ratings": [{"item": 1, "rating": 4}], "k": ' + b"9" * 5000 + b"}",  # past int()'s digits
    ],
)
def test_a_body_that_is_not_json_is_a_400_in_json(client, body):
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json" and response.json()["detail"]


def test_unknown_routes_and_wrong_methods_answer_json_with_every_allowed_method(client):
    for method, path in (("GET", "/no/such/route"), ("POST", "/no/such/route"), ("GET", "/static/../api.py")):
        response = client.request(method, path)
        assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    for method, path, allowed in (
        ("DELETE", "/recommend", "GET, HEAD, POST"),
        ("PUT", "/health", "GET, HEAD"),
        ("OPTIONS", "/users/1/ratings", "GET, HEAD"),
        ("POST", "/static/app.js", "GET, HEAD"),
    ):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.json() == {"detail": "Method Not Allowed"} and response.headers["allow"] == allowed


def test_a_body_is_counted_whatever_its_content_length_says(client):
    """A Content-Length below the body's size is only the client's word: the bytes are counted."""
    lying = client.post(
        "/recommend",
        content=b" " * 2_000_000,
        headers={"content-type": "application/json", "content-length": "10"},
    )
    assert lying.status_code == 413 and "streamed past 1,000,000 bytes" in lying.json()["detail"]

    def chunks():  # no Content-Length at all
        yield b'{"ratings": ['
        for _ in range(11):
            yield b" " * 100_000

    chunked = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.headers["content-type"] == "application/json"


def test_a_body_that_stops_arriving_is_a_408():
    """A client that declares more than it sends is answered, not waited on for good."""
    called, sent = [], []
    messages = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

    async def app(scope, receive, send):
        called.append(scope)

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.sleep(60)  # the rest never comes
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"1000")]}
    began = time.perf_counter()
    asyncio.run(BodyLimit(app, limit=1000, seconds=0.05)(scope, receive, send))
    assert time.perf_counter() - began < 5 and not called
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"]) == {"detail": "request body incomplete after 0.05 s"}


def test_a_request_without_a_body_by_its_framing_goes_straight_on():
    """HTTP/1 without Content-Length or Transfer-Encoding has no body: nothing to hold or time. Where
    the framing says nothing (HTTP/2), the body is counted as ever."""
    received = []

    async def app(scope, receive, send):
        received.append(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def request(http_version: str) -> tuple[list[dict], object]:
        async def receive():
            return {"type": "http.request", "body": b"x" * 2000, "more_body": False}

        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "http_version": http_version, "method": "GET", "path": "/", "headers": []}
        asyncio.run(BodyLimit(app, limit=1000)(scope, receive, send))
        return sent, receive

    sent, receive = request("1.1")
    assert sent[0]["status"] == 200 and received == [receive]  # the server's own receive, untouched
    assert request("2")[0][0]["status"] == 413 and len(received) == 1


def test_a_well_formed_recommend_query_is_answered_as_the_route_answers_it(bmf):
    """``GET /recommend`` with a query the route takes is answered before FastAPI's routing: the same
    status, headers and body as the route itself gives, for good queries and bad ones alike."""
    fast = TestClient(create_app(bmf))
    routed = create_app(bmf)
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not QueryRoute]
    routed = TestClient(routed)
    queries = [
        "user=1",
        "user=1&k=3&explain=false",
        "user=2&k=4&offset=2&explain=0&include_seen=yes",
        "user=1&user=2&k=5&k=3",  # the last value of a single parameter, as FastAPI reads it
        "user=2&genres=Comedy&genre=Romance&genres=drama&k=6",  # every value of a repeatable one
        "user=2&exclude=33&exclude=34&min_year=1995&max_year=2008&min_ratings=5&max_per_genre=2",
        "user=1&diversity=0.3&k=5&unknown=1",
        "user=%201&k=007",
        "user=1&k=",  # then FastAPI's 422s
        "user=1&k=1.0",
        "user=1&diversity=nan",
        "user=1&genres=",
        "user=1&explain=2",
        "k=3",
        "user=999",  # and the recommender's 404 and 400
        "user=1&genres=Western",
    ]

    def answer(client: TestClient, method: str, query: str) -> tuple[int, dict[str, str], bytes]:
        response = client.request(method, f"/recommend?{query}")
        return response.status_code, dict(response.headers), response.content

    for query in queries:
        for method in ("GET", "HEAD"):
            assert answer(fast, method, query) == answer(routed, method, query), (method, query)


def test_the_query_route_answers_only_what_its_model_takes():
    """Anything else reaches the app: another path or method, a query the model refuses, and an
    error of the endpoint (the app's route raises it again, and answers it as every error is)."""
    from pydantic import BaseModel, Field

    class Query(BaseModel):
        user: int = Field(ge=1)
        tags: list[str] | None = None

    answered, passed = [], []

    async def endpoint(query: Query) -> Response:
        if query.user == 999:
            raise UnknownIdError("user 999: not an id of this model")
        answered.append(query)
        return Response(b"fast", media_type="text/plain")

    async def app(scope, receive, send):
        passed.append(scope["query_string"])

    def call(method: str, path: str, query: bytes) -> None:
        async def send(message):
            pass

        scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}
        asyncio.run(QueryRoute(app, "/recommend", Query, endpoint)(scope, None, send))

    call("GET", "/recommend", b"user=2&tags=a&tags=b&user=3&other=x")
    assert answered == [Query(user=3, tags=["a", "b"])] and not passed
    for method, path, query in [
        ("POST", "/recommend", b"user=2"),
        ("GET", "/similar", b"user=2"),
        ("GET", "/recommend", b"user=0"),
        ("GET", "/recommend", b"user=999"),
    ]:
        call(method, path, query)
    assert len(answered) == 1 and passed == [b"user=2", b"user=2", b"user=0", b"user=999"]


def test_at_most_1000_ratings_and_k_up_to_the_configured_cap(client, bmf):
    many = [{"item": str(i), "rating": 4} for i in range(1, 1002)]
    response = client.post("/recommend", json={"ratings": many})
    assert response.status_code == 422 and "at most 1000" in response.json()["detail"][0]["msg"]
    capped = TestClient(create_app(bmf, max_k=20))
    assert len(capped.get("/recommend", params={"user": 1, "k": 20}).json()["items"]) == 20
    for path, params in (("/recommend", {"user": 1, "k": 21}), ("/similar", {"item": 1, "k": 21})):
        answer = capped.get(path, params=params)
        assert answer.status_code == 422 and "less than or equal to 20" in answer.text
    body = {"ratings": [{"item": 1, "rating": 5}], "k": 21}
    assert capped.post("/recommend", json=body).status_code == 422
    assert capped.get("/health").json()["limits"]["max_k"] == 20


def test_pages_do_not_overlap_and_concatenate_to_the_top(client):
    def items(answer) -> list[int]:
        assert answer.status_code == 200, answer.text
        return [m["item"] for m in answer.json()["items"]]

    get = {"user": 2, "genres": ["Comedy", "Romance"]}
    first = items(client.get("/recommend", params={**get, "k": 10}))
    second = items(client.get("/recommend", params={**get, "k": 10, "offset": 10}))
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    assert first + second == items(client.get("/recommend", params={**get, "k": 20}))
    post = {"ratings": [{"item": 31, "rating": 5}, {"item": 1, "rating": 1}]}
    page = [items(client.post("/recommend", json={**post, "k": 10, "offset": o})) for o in (0, 10)]
    assert not set(page[0]) & set(page[1])
    assert page[0] + page[1] == items(client.post("/recommend", json={**post, "k": 20}))
    assert client.post("/recommend", json={**post, "offset": 10}).json()["offset"] == 10


def test_every_filter_reaches_the_recommender(client, bmf):
    params = {
        "user": 2,
        "k": 8,
        "genres": ["Romance"],
        "min_year": 1995,
        "max_year": 2008,
        "min_ratings": 5,
        "exclude": ["33", "34"],
        "max_per_genre": 8,
        "diversity": 0.3,
        "explain": "false",
    }
    answer = client.get("/recommend", params=params).json()
    same = {**{k: v for k, v in params.items() if k != "user"}, "explain": False}
    expected = bmf.recommend(2, **same)
    assert answer == json.loads(expected.model_dump_json())
    assert answer["items"] and all(not m["because"] for m in answer["items"])
    assert all("Romance" in m["genres"] and 1995 <= m["year"] <= 2008 for m in answer["items"])
    assert not {33, 34} & {m["item"] for m in answer["items"]}
    body = {"ratings": [{"item": 31, "rating": 5}], **{k: v for k, v in params.items() if k != "user"}}
    cold = client.post("/recommend", json={**body, "explain": False}).json()
    expected_cold = bmf.recommend_new({"31": 5}, **same)
    assert cold == json.loads(expected_cold.model_dump_json())
    per_genre = client.get("/recommend", params={"user": 1, "k": 10, "max_per_genre": 3}).json()["items"]
    assert len(per_genre) == 6  # three comedies, three Drama|Romance films: both genres are full


# --- a ranker paired with a rater, on ml-latest-small -------------------------------------------------

STAR_WARS = {"260": 5, "1196": 5, "1210": 5}  # Episodes IV, V and VI


@pytest.fixture(scope="module")
def ml_runs(tmp_path_factory) -> dict[str, Path]:
    """A ranking model that folds new users in (item-kNN) and a rating model (biased MF, a few quick
    epochs), both trained on the bundled ml-latest-small with the same split."""
    import deepmovie.models.ranking.item_knn  # noqa: F401  (registers item-knn)

    root = tmp_path_factory.mktemp("ml-runs")
    models = {
        "item-knn": {},
        "biased-mf": {"optimizer": "adam", "lr": 0.02, "factors": 16, "epochs": 3, "batch_size": 4096},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: on a busy machine more threads were 20x slower here
    try:
        for model, params in models.items():
            values = {"model": model, "data": "ml-latest-small", "device": "cpu", "params": params}
            run(build_config(values), root / model, quiet=True)
    finally:
        torch.set_num_threads(threads)
    return {name: root / name for name in models}


@pytest.fixture(scope="module")
def paired(ml_runs) -> Recommender:
    return load_recommender(ml_runs["item-knn"], ml_runs["biased-mf"])


def test_the_list_is_ordered_by_the_ranker_with_the_raters_stars(paired, ml_runs):
    rater = paired.rater
    assert paired.model_name == "item-knn" and rater.model_name == "biased-mf"
    http = TestClient(create_app(paired))
    health = http.get("/health").json()
    assert (health["ranker"], health["rater"], health["cold_start"]) == ("item-knn", "biased-mf", True)
    known = http.get("/recommend", params={"user": 1, "k": 10}).json()
    scores = [m["score"] for m in known["items"]]
    assert scores == sorted(scores, reverse=True) and known["ranker"] == "item-knn"
    for m in known["items"]:
        assert m["rating"] == pytest.approx(rater.predict(1, m["item"]).rating, abs=1e-3)
        assert m["because"] and m["because"][0]["title"]
    alone = Recommender.load(ml_runs["item-knn"]).recommend(1, k=10)
    assert [m.item for m in alone.items] == [m["item"] for m in known["items"]]  # the rater never reorders
    assert all(m.rating is None for m in alone.items) and alone.rater is None
    cold = http.post(
        "/recommend", json={"ratings": [{"item": i, "rating": r} for i, r in STAR_WARS.items()], "k": 10}
    ).json()
    scores = [m["score"] for m in cold["items"]]
    assert scores == sorted(scores, reverse=True) and all(m["rating"] is not None for m in cold["items"])
    stars = rater.recommend_new(STAR_WARS, k=rater.artifacts.n_items, explain=False)
    by_item = {m.item: m.rating for m in stars.items}
    assert all(m["rating"] == pytest.approx(by_item[m["item"]], abs=1e-3) for m in cold["items"])
    assert http.get("/predict", params={"user": 1, "item": 1}).json()["rating"] == rater.predict(1, 1).rating


def test_a_rater_trained_on_other_data_or_without_ratings_is_refused(ml_runs, runs):
    with pytest.raises(DeepMovieError, match="trained on other data"):
        load_recommender(ml_runs["item-knn"], runs("biased-mf"))
    with pytest.raises(DeepMovieError, match="predicts no ratings"):
        load_recommender(ml_runs["biased-mf"], ml_runs["item-knn"])


def test_cli_recommend_shows_score_stars_and_because(ml_runs, runs):
    from typer.testing import CliRunner

    from deepmovie.cli.app import app

    knn, bmf_run = str(ml_runs["item-knn"]), str(ml_runs["biased-mf"])
    cli = CliRunner()
    ratings = ",".join(f"{i}:{r}" for i, r in STAR_WARS.items())
    result = cli.invoke(
        app, ["recommend", "--ranker", knn, "--rater", bmf_run, "--ratings", ratings, "-k", "3"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("top 3 for a new user (cold start): ranked by item-knn")
    assert "stars by biased-mf" in lines[0]
    assert lines[1].startswith("  1.") and "★" in lines[1]
    assert lines[2].strip().startswith("because you liked Star Wars")
    page = cli.invoke(app, ["recommend", knn, "--user", "1", "-k", "2", "--offset", "2", "--no-explain"])
    assert page.exit_code == 0, page.output
    assert [line[:4] for line in page.output.splitlines()[1:]] == ["  3.", "  4."]
    assert "no stars" in page.output and "because" not in page.output
    as_json = cli.invoke(
        app, ["recommend", knn, "--ratings", ratings, "--genre", "Comedy", "--json", "-k", "2"]
    )
    assert all("Comedy" in m["genres"] for m in json.loads(as_json.output)["items"])
    bad = cli.invoke(app, ["serve", "--ranker", knn, "--rater", str(runs("biased-mf"))])
    assert isinstance(bad.exception, DeepMovieError) and "other data" in str(bad.exception)
    both = cli.invoke(app, ["recommend", knn, "--ranker", knn, "--user", "1"])
    assert isinstance(both.exception, DeepMovieError)
    serve_help = cli.invoke(app, ["serve", "--help"], terminal_width=200).output
    assert all(option in serve_help for option in ("--ranker", "--rater", "--max-body", "--max-k"))


def test_worker_processes_load_both_runs_and_the_limits_from_the_environment(ml_runs, monkeypatch):
    env = serve_env(ml_runs["item-knn"], ml_runs["biased-mf"], max_body=5000, max_k=50)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    health = TestClient(app_from_env()).get("/health").json()
    assert (health["ranker"], health["rater"]) == ("item-knn", "biased-mf")
    assert health["limits"]["max_body"] == 5000 and health["limits"]["max_k"] == 50
    monkeypatch.setenv(RATER_ENV, "")
    assert TestClient(app_from_env()).get("/health").json()["rater"] is None


def _serve(app) -> tuple[str, object, threading.Thread]:
    """``app`` under a real uvicorn server in a thread, on a free port."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", instance, thread


@pytest.fixture(scope="module")
def server(bmf):
    url, instance, thread = _serve(create_app(bmf))
    yield url
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


def test_a_real_server_refuses_a_chunked_body_past_the_limit(server):
    """Over the wire, with no Content-Length: the server counts the chunks and answers 413."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65_536
        for _ in range(16):  # 1,048,576 bytes: past the limit, and no more
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = conn.recv(65_536)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["detail"].startswith("request body streamed past 1,000,000 bytes")


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


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        pytest.skip(
            "no chromium + chromedriver here (CI installs Debian's: apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def paired_server(browser, paired):
    """The ml-latest-small pair served by uvicorn in a thread (after the browser, so a machine without
    one skips before any training)."""
    url, instance, thread = _serve(create_app(paired))
    yield url
    instance.should_exit = True
    thread.join(10)


def test_web_page_end_to_end_in_headless_chromium(browser, paired_server):
    """Rate three Star Wars films at 5 stars; the recommendations are other Sci-Fi or Adventure films,
    with predicted stars and a "because you liked" line; "More like this" shows similar films; "More"
    fetches the next page; the genre filter applies; a known user is looked up; a phone screen fits."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(paired_server + "/")
    wait.until(lambda b: "ranked by item-knn" in b.find_element(By.ID, "model").text)
    assert "stars by biased-mf" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "search").send_keys("Star Wars")
    browser.find_element(By.ID, "search-button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, '#search-results li[data-item="1210"]'))
    for item in STAR_WARS:
        row = browser.find_element(By.CSS_SELECTOR, f'#search-results li[data-item="{item}"]')
        row.find_element(By.CSS_SELECTOR, '.star[data-value="5"]').click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#my-ratings li[data-item]")) == 3

    browser.find_element(By.ID, "recommend-new").click()
    rows = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#new-recs li.rec"))
    assert len(rows) == 10
    items = [r.get_attribute("data-item") for r in rows]
    assert not set(items) & set(STAR_WARS)
    genres = [r.find_element(By.CLASS_NAME, "genres").text for r in rows]
    assert sum("Sci-Fi" in g or "Adventure" in g for g in genres) >= 6, genres
    assert all("★" in r.find_element(By.CLASS_NAME, "stars").text for r in rows)
    because = rows[0].find_element(By.CLASS_NAME, "because").text
    assert because.startswith("because you liked Star Wars"), because

    rows[0].find_element(By.CLASS_NAME, "more-like").click()
    similar = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#new-recs li.rec .similar li"))
    assert similar and rows[0].get_attribute("data-item") not in [
        s.get_attribute("data-item") for s in similar
    ]
    assert not {s.get_attribute("data-item") for s in similar} & set(STAR_WARS)  # rated films left out

    browser.find_element(By.CSS_SELECTOR, "#new-recs button.more").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#new-recs li.rec")) == 20)
    twenty = [
        r.get_attribute("data-item") for r in browser.find_elements(By.CSS_SELECTOR, "#new-recs li.rec")
    ]
    assert twenty[:10] == items and len(set(twenty)) == 20

    Select(browser.find_element(By.ID, "genre")).select_by_value("Comedy")
    wait.until(
        lambda b: (
            (r := b.find_elements(By.CSS_SELECTOR, "#new-recs li.rec"))
            and len(r) == 10
            and all("Comedy" in x.find_element(By.CLASS_NAME, "genres").text for x in r)
        )
    )
    Select(browser.find_element(By.ID, "genre")).select_by_value("")

    browser.find_element(By.ID, "user").send_keys("1")
    browser.find_element(By.ID, "user-button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-recs li.rec"))
    assert wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#user-history li"))
    assert "because you liked" in browser.find_element(By.CSS_SELECTOR, "#user-recs .because").text
    browser.find_element(By.ID, "user").clear()
    browser.find_element(By.ID, "user").send_keys("99999")
    browser.find_element(By.ID, "user-button").click()
    wait.until(lambda b: "user 99999" in b.find_element(By.ID, "error").text)

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
