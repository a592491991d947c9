"""Request bodies of the mutating routes, validated by pydantic (their JSON Schemas go to OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: most keys, tags or warmers one request may name
MAX_ITEMS = 10_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InvalidateRequest(_Body):
    """What to invalidate: any mix of keys, tags and a key prefix (at least one)."""

    keys: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    prefix: str | None = Field(default=None, min_length=1, max_length=1024)
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _something(self) -> InvalidateRequest:
        if not (self.keys or self.tags or self.prefix):
            raise ValueError("nothing to invalidate: give keys, tags or prefix")
        return self


class WarmRequest(_Body):
    """Which registered warmers to run (all when omitted) and how."""

    warmers: list[str] | None = Field(default=None, max_length=MAX_ITEMS)
    from_hot: bool = False
    concurrency: int = Field(default=16, ge=1, le=256)
    reason: str | None = Field(default=None, max_length=500)


class FlushRequest(_Body):
    """Remove every entry of the namespace; ``confirm`` must be ``true``."""

    confirm: bool
    reason: str | None = Field(default=None, max_length=500)


class TablesRequest(_Body):
    """Database tables whose cached query results must go (the SQL query cache)."""

    tables: list[str] = Field(min_length=1, max_length=MAX_ITEMS)
    reason: str | None = Field(default=None, max_length=500)


def component_schemas() -> dict[str, Any]:
    """JSON Schemas of the request bodies, as OpenAPI ``components.schemas``."""
    schemas: dict[str, Any] = {}
    for model in (InvalidateRequest, WarmRequest, FlushRequest, TablesRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas
