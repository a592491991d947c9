"""Property-based run of the served OpenAPI document: no input makes the admin API fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

import stratacache as sc
from stratacache.admin import AdminAction, AdminAPI

from .serving import serve

TOKEN = "fuzz-admin-token-0123456789"


ACTIONS: list[AdminAction] = []


@pytest.fixture(scope="module")
def base_url(redis_server: str) -> Iterator[str]:
    """The admin API over memory + Redis, served by uvicorn for the whole module."""
    url = redis_server.rsplit("/", 1)[0] + "/15"
    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=url)], namespace="fuzz")

    @cache.cached(ttl=60, warm=[1, 2])
    async def double(x: int) -> int:
        return 2 * x

    with cache.sync as sync:
        for i in range(30):
            sync.set(f"user:{i}", {"i": i}, tags=[f"org:{i % 3}"])
    with serve(AdminAPI(cache, token=TOKEN, audit=[ACTIONS.append])) as port:
        yield f"http://127.0.0.1:{port}"


def operations(base_url: str) -> list[Any]:
    """Every operation of the document the server serves."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_no_input_makes_a_server_error(base_url: str, mode: GenerationMode) -> None:
    """Generated requests (valid and invalid ones) to every operation never get a 5xx answer."""
    ops = operations(base_url)
    assert len(ops) >= 9
    for operation in ops:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=[not_a_server_error],
            )

        try:
            run()
        except Unsatisfiable:  # an operation without inputs has no invalid request to make
            assert mode is GenerationMode.NEGATIVE
    if mode is GenerationMode.POSITIVE:
        assert ACTIONS, "the generated requests never reached a mutating route"
