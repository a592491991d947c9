"""Reading requests: JSON bodies within a size limit, validated by their model; query integers."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .problems import Problem

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, limit: int, model: type[M]) -> M:
    """The JSON body as ``model``.

    Raises:
        Problem: 415 when it is not JSON, 413 past ``limit`` bytes, 400 when it does
            not validate (with every error in ``errors``).
    """
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "send the body as application/json")
    raw = await read_limited(request, limit)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid body"}
        where = ".".join(first["loc"]) or "body"
        raise Problem(400, f"{where}: {first['msg']}", errors=errors) from exc


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body; a 413 problem as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def int_param(text: str, name: str, low: int, high: int) -> int:
    """A query parameter as an integer in ``[low, high]``; a 400 problem otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise Problem(400, f"{name} must be between {low} and {high}")
    return value
