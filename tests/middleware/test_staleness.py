"""Serving stale responses: stale-while-revalidate, stale-if-error, must-revalidate (RFC 5861)."""

from __future__ import annotations

from tests.waiting import wait_until

from .apps import unique
from .conftest import Server


def test_stale_while_revalidate_serves_the_stale_copy(server: Server) -> None:
    """Within stale-while-revalidate, the old body is served at once, marked STALE."""
    path = unique() + "?cc=max-age%3D30,stale-while-revalidate%3D300"
    server.get(path)
    server.advance(40)
    stale = server.get(path)
    assert (stale.headers["x-cache"], stale.text) == ("STALE", "call 1 lang=-")


def test_stale_while_revalidate_refreshes_in_the_background(server: Server) -> None:
    """After a STALE answer, the cache fetches a new copy without a client waiting."""
    path = unique() + "?cc=max-age%3D30,stale-while-revalidate%3D300"
    server.get(path)
    server.advance(40)
    server.get(path)
    wait_until(lambda: server.get(path).text == "call 2 lang=-", what="background refresh")


def test_stale_if_error_hides_an_origin_500(server: Server) -> None:
    """Within stale-if-error, an origin 500 is replaced by the stale copy."""
    path = unique() + "?cc=max-age%3D30,stale-if-error%3D300&fail=500"
    server.get(path)
    server.advance(40)
    stale = server.get(path)
    assert (stale.status_code, stale.headers["x-cache"], stale.text) == (
        200,
        "STALE",
        "call 1 lang=-",
    )


def test_stale_if_error_hides_an_origin_exception(server: Server) -> None:
    """Within stale-if-error, an exception in the app is replaced by the stale copy."""
    path = unique() + "?cc=max-age%3D30,stale-if-error%3D300&fail=raise"
    server.get(path)
    server.advance(40)
    assert server.get(path).headers["x-cache"] == "STALE"


def test_stale_if_error_prefers_a_working_origin(server: Server) -> None:
    """Within stale-if-error, a working origin's new response is what the client gets."""
    path = unique() + "?cc=max-age%3D30,stale-if-error%3D300"
    server.get(path)
    server.advance(40)
    assert server.get(path).text == "call 2 lang=-"


def test_stale_if_error_window_ends(server: Server) -> None:
    """Past the stale-if-error window the origin's error reaches the client."""
    path = unique() + "?cc=max-age%3D30,stale-if-error%3D60&fail=500"
    server.get(path)
    server.advance(100)
    assert server.get(path).status_code == 500


def test_must_revalidate_forbids_stale_serving(server: Server) -> None:
    """must-revalidate turns off stale-while-revalidate once the response is stale."""
    path = unique() + "?cc=max-age%3D30,must-revalidate,stale-while-revalidate%3D300"
    server.get(path)
    server.advance(40)
    assert server.get(path).text == "call 2 lang=-"
