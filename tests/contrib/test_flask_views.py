"""``ext.cached`` on Flask views: one page per request URL, responses replayed whole."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, g, jsonify, make_response, request, session

from stratacache import ConfigError
from stratacache.contrib.flask import Stratacache


def make_app(
    redis_url: str, namespace: str | None = None
) -> tuple[Flask, Stratacache, Counter[str]]:
    """Views of every shape a Flask view returns, each counting its calls."""
    app = Flask("views")
    app.config.update(
        STRATACACHE_URL=f"memory://?maxsize=100,{redis_url}",
        STRATACACHE_NAMESPACE=namespace or f"fv{uuid.uuid4().hex[:8]}",
        SECRET_KEY="test",
    )
    app.testing = True
    ext = Stratacache(app)
    calls: Counter[str] = Counter()

    @ext.cached(ttl=60, key="user:{uid}")
    def load_user(uid: int) -> dict[str, int]:
        calls["load_user"] += 1
        return {"id": uid}

    @app.get("/search")
    @ext.cached(ttl=60)
    def search() -> str:
        calls["search"] += 1
        return f"results for {request.args.get('q')} {request.args.get('page')}"

    @app.get("/users/<int:uid>")
    @ext.cached(ttl=60, key="user-page:{uid}")
    def user_page(uid: int) -> Response:
        calls["user_page"] += 1
        return jsonify(load_user(uid))

    @app.get("/created")
    @ext.cached(ttl=60)
    def created() -> tuple[str, int, dict[str, str]]:
        calls["created"] += 1
        return "made", 201, {"X-Thing": "42", "Content-Type": "text/x-made"}

    @app.get("/cookie")
    @ext.cached(ttl=60)
    def cookie() -> Response:
        calls["cookie"] += 1
        response = make_response(f"hello {calls['cookie']}")
        response.set_cookie("seen", str(calls["cookie"]))
        return response

    @app.get("/me")
    @ext.cached(ttl=60)
    def me() -> str:
        calls["me"] += 1
        return f"page of {session.get('user')}"

    @app.before_request
    def load_user_hook() -> None:
        if request.path == "/hooked":
            g.user = session.get("user")

    @app.get("/hooked")
    @ext.cached(ttl=60)
    def hooked() -> str:
        calls["hooked"] += 1
        return f"page of {g.user}"

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        return "ok"

    @app.get("/stream")
    @ext.cached(ttl=60)
    def stream() -> Response:
        calls["stream"] += 1

        def chunks() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(chunks())

    @app.get("/broken")
    @ext.cached(ttl=60)
    def broken() -> tuple[str, int]:
        calls["broken"] += 1
        return "down", 503

    @app.get("/later")
    @ext.cached(ttl=60, refresh_after=10)
    def later() -> str:
        return "later"

    @app.get("/async")
    @ext.cached(ttl=60)
    async def async_view() -> Response:
        calls["async"] += 1
        return jsonify(q=request.args.get("q"))

    @app.route("/find", methods=["GET", "POST"])
    @ext.cached(ttl=60)
    def find() -> str:
        calls["find"] += 1
        return f"results for {request.values.get('q')}"

    @app.post("/transfer")
    @ext.cached(ttl=60)
    def transfer() -> str:
        calls["transfer"] += 1
        return f"sent {request.json['amount']} to {request.json['to']}"  # type: ignore[index]

    @app.get("/hello")
    @ext.cached(ttl=60)
    def hello() -> str:
        calls["hello"] += 1
        return f"hello {request.cookies.get('uid', 'anonymous')}"

    @app.get("/account")
    @ext.cached(ttl=60, key="account-page")
    def account() -> str:
        calls["account"] += 1
        auth = request.authorization
        return f"account of {auth.username if auth else 'nobody'}"

    @app.get("/catalog")
    @ext.cached(ttl=60, vary_on_cookies=["lang"], ignore_cookies=["_ga*"])
    def catalog() -> str:
        calls["catalog"] += 1
        return f"catalog in {request.cookies.get('lang')}"

    @app.get("/blog")
    @ext.cached(ttl=60, public=True)
    async def blog() -> str:
        calls["blog"] += 1
        return f"blog {calls['blog']}"

    @app.get("/public-me")
    @ext.cached(ttl=60, public=True)
    def public_me() -> str:
        calls["public_me"] += 1
        return f"page of {session.get('user')}"

    return app, ext, calls


@pytest.fixture
def shop(redis_url: str) -> Iterator[tuple[Flask, Stratacache, Counter[str]]]:
    """The views app, its extension and its call counter; the cache closed after."""
    app, ext, calls = make_app(redis_url)
    yield app, ext, calls
    ext.close()


Shop = tuple[Flask, Stratacache, Counter[str]]


def test_default_key_holds_the_query_string(shop: Shop) -> None:
    """Without key=, ?q=a and ?q=b are two pages; each is computed once."""
    app, _, calls = shop
    client = app.test_client()
    assert client.get("/search?q=a").text == "results for a None"
    assert client.get("/search?q=b").text == "results for b None"
    assert client.get("/search?q=a").text == "results for a None"
    assert calls["search"] == 2


def test_default_key_ignores_query_order(shop: Shop) -> None:
    """?q=a&page=2 and ?page=2&q=a are one page (the query is put in canonical order)."""
    app, _, calls = shop
    client = app.test_client()
    first = client.get("/search?q=a&page=2").text
    assert client.get("/search?page=2&q=a").text == first == "results for a 2"
    assert calls["search"] == 1


def test_default_key_holds_the_method(shop: Shop) -> None:
    """A HEAD does not answer from the GET's entry: the method is part of the key."""
    app, _, calls = shop
    client = app.test_client()
    client.get("/search?q=m")
    client.head("/search?q=m")
    client.head("/search?q=m")
    assert calls["search"] == 2


def test_jsonify_view_is_replayed_whole(shop: Shop) -> None:
    """A view returning jsonify(...) is cached: same status, content type and body on a hit."""
    app, _, calls = shop
    client = app.test_client()
    first, second = client.get("/users/7"), client.get("/users/7")
    assert (first.status_code, first.json) == (200, {"id": 7})
    assert (second.status_code, second.mimetype, second.json) == (
        200,
        "application/json",
        {"id": 7},
    )
    assert calls["user_page"] == 1


def test_tuple_with_status_and_headers_is_replayed(shop: Shop) -> None:
    """A (body, status, headers) tuple comes back with its status and headers."""
    app, _, calls = shop
    client = app.test_client()
    for _ in range(2):
        response = client.get("/created")
        assert (response.status_code, response.text) == (201, "made")
        assert response.headers["X-Thing"] == "42"
        assert response.headers["Content-Type"] == "text/x-made"
    assert calls["created"] == 1


def test_page_is_replayed_by_another_process_from_redis(redis_url: str) -> None:
    """The stored page survives serialization: a second app on the same namespace replays it."""
    namespace = f"fv{uuid.uuid4().hex[:8]}"
    first, ext1, calls1 = make_app(redis_url, namespace)
    second, ext2, calls2 = make_app(redis_url, namespace)
    try:
        assert first.test_client().get("/created?x=1").status_code == 201
        replayed = second.test_client().get("/created?x=1")
        assert (replayed.status_code, replayed.text, replayed.headers["X-Thing"]) == (
            201,
            "made",
            "42",
        )
        assert (calls1["created"], calls2["created"]) == (1, 0)
    finally:
        ext1.close()
        ext2.close()


def test_response_setting_a_cookie_is_not_stored(shop: Shop) -> None:
    """A response with Set-Cookie belongs to its requester: every request runs the view."""
    app, _, _ = shop
    client = app.test_client()
    assert client.get("/cookie").text == "hello 1"
    second = client.get("/cookie")
    assert second.text == "hello 2" and "seen=2" in second.headers["Set-Cookie"]


def test_view_reading_the_session_is_not_shared(shop: Shop) -> None:
    """With the default key, a page built from the session is not served to another user."""
    app, _, calls = shop
    alice, bob = app.test_client(), app.test_client()
    alice.get("/login/alice")
    bob.get("/login/bob")
    assert alice.get("/me").text == "page of alice"
    assert bob.get("/me").text == "page of bob"
    assert calls["me"] == 2


def test_session_read_before_the_view_keeps_the_page_personal(shop: Shop) -> None:
    """A before_request hook that loads the user from the session makes the page personal."""
    app, _, calls = shop
    alice, bob = app.test_client(), app.test_client()
    alice.get("/login/alice")
    bob.get("/login/bob")
    assert (alice.get("/hooked").text, bob.get("/hooked").text) == ("page of alice", "page of bob")
    assert calls["hooked"] == 2


def test_streamed_response_passes_through(shop: Shop) -> None:
    """A streamed response is returned as it is and not stored (it can be read only once)."""
    app, _, calls = shop
    client = app.test_client()
    assert [client.get("/stream").text for _ in range(2)] == ["ab", "ab"]
    assert calls["stream"] == 2


def test_server_error_is_not_stored(shop: Shop) -> None:
    """A 5xx answer is not kept: the next request asks the view again."""
    app, _, calls = shop
    client = app.test_client()
    assert [client.get("/broken").status_code for _ in range(2)] == [503, 503]
    assert calls["broken"] == 2


def test_function_called_by_a_view_keeps_its_own_key(shop: Shop) -> None:
    """Only the view serving the request is keyed by the URL; what it calls keeps its key."""
    app, ext, calls = shop
    client = app.test_client()
    client.get("/users/3")
    client.get("/users/3?x=1")  # key= names what the page depends on: the query is left out
    assert ext.cache.sync.get("user:3") == {"id": 3}
    assert (calls["user_page"], calls["load_user"]) == (1, 1)
    stored = ext.cache.sync.get("user-page:3")
    assert stored["s"] == 200 and json.loads(stored["b"]) == {"id": 3}


def test_options_needing_a_request_in_the_background_are_refused(shop: Shop) -> None:
    """refresh_after would run the view outside a request: a ConfigError says so."""
    app, _, _ = shop
    with pytest.raises(ConfigError, match="refresh_after"):
        app.test_client().get("/later")


def test_async_view_is_cached_per_query(shop: Shop) -> None:
    """An async view gets the same page key and replay as a sync one."""
    app, _, calls = shop
    client = app.test_client()
    answers: list[Any] = [client.get(f"/async?q={q}").json for q in ("a", "b", "a")]
    assert answers == [{"q": "a"}, {"q": "b"}, {"q": "a"}]
    assert calls["async"] == 2


def test_post_runs_the_view_every_time(shop: Shop) -> None:
    """A POST's body is not in the key and the view must act: it is never served nor stored."""
    app, _, calls = shop
    client = app.test_client()
    assert client.post("/find", data={"q": "alice-secret"}).text == "results for alice-secret"
    assert client.post("/find", data={"q": "bob"}).text == "results for bob"
    client.post("/transfer", json={"amount": 5, "to": "carol"})
    assert client.post("/transfer", json={"amount": 500, "to": "eve"}).text == "sent 500 to eve"
    assert (calls["find"], calls["transfer"]) == (2, 2)


def test_post_does_not_answer_from_nor_fill_the_get_page(shop: Shop) -> None:
    """GET pages are still cached beside uncached POSTs to the same URL."""
    app, _, calls = shop
    client = app.test_client()
    assert client.get("/find?q=a").text == "results for a"
    assert client.post("/find?q=a", data={"q": "b"}).text == "results for a"  # values: args first
    assert client.get("/find?q=a").text == "results for a"
    assert calls["find"] == 2


def test_page_built_from_a_cookie_is_not_served_to_the_next_user(shop: Shop) -> None:
    """A request carrying a cookie runs the view and leaves nothing for the next user."""
    app, _, calls = shop
    alice, bob, anonymous = app.test_client(), app.test_client(), app.test_client()
    alice.set_cookie("uid", "alice")
    bob.set_cookie("uid", "bob")
    assert alice.get("/hello").text == "hello alice"
    assert bob.get("/hello").text == "hello bob"
    assert anonymous.get("/hello").text == "hello anonymous"
    assert alice.get("/hello").text == "hello alice"  # the cookieless page is not hers
    assert anonymous.get("/hello").text == "hello anonymous"
    assert calls["hello"] == 4


def test_authorized_request_is_neither_served_nor_stored(shop: Shop) -> None:
    """Authorization keeps the page personal, even under an explicit key=."""
    app, _, calls = shop
    client = app.test_client()
    assert client.get("/account", auth=("alice", "pw")).text == "account of alice"
    assert client.get("/account", auth=("bob", "pw")).text == "account of bob"
    assert client.get("/account").text == "account of nobody"
    assert client.get("/account", auth=("bob", "pw")).text == "account of bob"
    assert client.get("/account").text == "account of nobody"
    assert calls["account"] == 4  # the last visit is the cookieless page's hit


def test_anonymous_page_is_not_served_to_a_logged_in_user(shop: Shop) -> None:
    """The session cookie keeps a logged-in user from the page cached for visitors."""
    app, _, _ = shop
    visitor, carol = app.test_client(), app.test_client()
    assert visitor.get("/me").text == "page of None"
    carol.get("/login/carol")
    assert carol.get("/me").text == "page of carol"


def test_vary_on_cookies_keys_the_view_page_on_them(shop: Shop) -> None:
    """One page per lang value; ignored cookies count as none; another cookie passes."""
    app, _, calls = shop
    fr, de, other = app.test_client(), app.test_client(), app.test_client()
    fr.set_cookie("lang", "fr")
    fr.set_cookie("_ga", "1")
    de.set_cookie("lang", "de")
    other.set_cookie("lang", "fr")
    other.set_cookie("sid", "x")
    assert [fr.get("/catalog").text for _ in range(2)] == ["catalog in fr"] * 2
    assert [de.get("/catalog").text for _ in range(2)] == ["catalog in de"] * 2
    assert other.get("/catalog").text == "catalog in fr"
    assert calls["catalog"] == 3


def test_repeated_varied_cookie_runs_the_view_uncached(shop: Shop) -> None:
    """``lang=en; lang=fr`` could key en and render fr: such a request neither reads nor writes."""
    app, _, calls = shop
    client = app.test_client(use_cookies=False)  # else the client's jar replaces Cookie
    assert client.get("/catalog", headers={"Cookie": "lang=fr; lang=en"}).status_code == 200
    assert client.get("/catalog", headers={"Cookie": "lang=en"}).text == "catalog in en"
    assert client.get("/catalog", headers={"Cookie": "lang=en"}).text == "catalog in en"
    assert client.get("/catalog", headers={"Cookie": "lang=en; lang=en"}).status_code == 200
    assert calls["catalog"] == 3


def test_public_view_shares_pages_whatever_the_cookies(shop: Shop) -> None:
    """public=True: cookies do not matter (async view here), but a session read still does."""
    app, _, calls = shop
    alice, bob = app.test_client(), app.test_client()
    alice.set_cookie("sid", "a")
    bob.set_cookie("sid", "b")
    assert (alice.get("/blog").text, bob.get("/blog").text) == ("blog 1", "blog 1")
    alice.get("/login/alice")
    bob.get("/login/bob")
    assert alice.get("/public-me").text == "page of alice"
    assert bob.get("/public-me").text == "page of bob"
    assert calls["public_me"] == 2


def test_cookie_options_of_a_view_are_checked(shop: Shop) -> None:
    """A string for a list, or vary_on_cookies beside key=, is a ConfigError at decoration."""
    _, ext, _ = shop
    with pytest.raises(ConfigError):
        ext.cached(vary_on_cookies="lang")(lambda: "x")
    with pytest.raises(ConfigError):
        ext.cached(key="k", vary_on_cookies=["lang"])(lambda: "x")
    with pytest.raises(ConfigError):
        ext.cached(ignore_cookies="_ga")(lambda: "x")


def test_cookie_options_do_not_reach_a_called_function(shop: Shop) -> None:
    """On a function a view calls, the view-only options are left out of its cache."""
    app, ext, _ = shop

    @ext.cached(ttl=60, key="plain:{x}", public=True)
    def plain(x: int) -> int:
        return x * 2

    with app.app_context():
        assert plain(4) == 8 == ext.cache.sync.get("plain:4")


def test_host_carrying_a_path_runs_the_view_uncached(shop: Shop) -> None:
    """A Host that is not host[:port] would paste a path into the page key: no cache."""
    app, _, calls = shop
    client = app.test_client()
    for _ in range(2):
        assert client.get("/search?q=a", headers={"Host": "localhost/x"}).status_code == 200
    assert calls["search"] == 2
    client.get("/search?q=a")
    client.get("/search?q=a")
    assert calls["search"] == 3
