"""The ``stratacache`` commands that talk to a running application through its admin API.

``keys``, ``inspect``, ``warm``, ``flush`` and ``admin serve`` live here;
``stats`` and ``invalidate`` (which can also work on the tiers directly) call
``show_stats`` / ``remote_invalidate``. The admin URL comes from
``--admin-url`` or ``$STRATACACHE_ADMIN_URL``; the token from the environment
variable ``--token-env`` names (``$STRATACACHE_ADMIN_TOKEN`` by default), never
from the command line, where other users of the host could read it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .client import AdminClient

if TYPE_CHECKING:
    import click

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_ENV = "STRATACACHE_ADMIN_TOKEN"
URL_ENV = "STRATACACHE_ADMIN_URL"


def admin_options(required: bool = True) -> Callable[[F], F]:
    """``--admin-url`` and ``--token-env`` for a command."""
    import click

    def decorate(fn: F) -> F:
        fn = click.option(
            "--token-env",
            default=TOKEN_ENV,
            show_default=True,
            help="Environment variable holding the bearer token.",
        )(fn)
        return click.option(
            "--admin-url",
            envvar=URL_ENV,
            required=required,
            default=None,
            help=f"Base URL of the application's admin API (default: ${URL_ENV}).",
        )(fn)

    return decorate


def client(admin_url: str, token_env: str) -> AdminClient:
    """An ``AdminClient`` for ``admin_url`` with the token from ``$token_env`` (if set)."""
    return AdminClient(admin_url, os.environ.get(token_env) or None)


def show_stats(api: AdminClient, as_json: bool) -> str:
    """``/stats`` as JSON or as tables (tiers, functions, breakers, bus)."""
    data = api.stats()
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    lines = [f"namespace {data['namespace']}"]
    tiers = data.get("tiers", {})
    width = max([12, *(len(n) for n in tiers)])
    lines.append(
        f"  {'tier':<{width}} {'hits':>12} {'misses':>12} {'hit rate':>9} {'errors':>8}  breaker"
    )
    breakers = data.get("breakers", {})
    for name, c in tiers.items():
        lines.append(
            f"  {name:<{width}} {c['hits']:>12,} {c['misses']:>12,} {c['hit_rate']:>9.1%} "
            f"{c['errors']:>8,}  {breakers.get(name, '?')}"
        )
    functions = data.get("functions", {})
    if functions:
        fwidth = max([12, *(len(n) for n in functions)])
        lines.append(f"  {'function':<{fwidth}} {'hits':>12} {'misses':>12} {'hit rate':>9}")
        for name, c in functions.items():
            lines.append(
                f"  {name:<{fwidth}} {c['hits']:>12,} {c['misses']:>12,} {c['hit_rate']:>9.1%}"
            )
    bus = data.get("bus", {})
    if bus.get("configured"):
        lines.append(f"  bus: {'connected' if bus.get('connected') else 'DISCONNECTED'}")
    return "\n".join(lines) + "\n"


def remote_invalidate(
    api: AdminClient, keys: list[str], tags: list[str], prefixes: list[str], reason: str
) -> str:
    """Invalidate through the admin API (one call per prefix: the API takes one at a time)."""
    for index, prefix in enumerate(prefixes or [None]):
        first = index == 0
        api.invalidate(keys if first else [], tags if first else [], prefix, reason)
    what = ", ".join(
        f"{len(items)} {label}"
        for items, label in ((keys, "key(s)"), (tags, "tag(s)"), (prefixes, "prefix(es)"))
        if items
    )
    return f"invalidated {what} through {api.base_url}"


def add_commands(cli: click.Group) -> None:
    """Add ``keys``, ``inspect``, ``warm``, ``flush`` and ``admin serve`` to ``cli``."""
    import click

    @cli.command()
    @click.option("--prefix", "-p", default="", help="Only keys starting with this.")
    @click.option("--limit", default=100, show_default=True, help="Keys per page (1-1000).")
    @click.option("--all", "every", is_flag=True, help="Follow the cursor to the last page.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON pages.")
    @admin_options()
    def keys(
        prefix: str, limit: int, every: bool, as_json: bool, admin_url: str, token_env: str
    ) -> None:
        """List the keys of a running application's cache (one page, or --all)."""
        api = client(admin_url, token_env)
        cursor: str | None = None
        while True:
            page = api.keys(prefix, limit, cursor)
            if as_json:
                click.echo(json.dumps(page))
            else:
                for key in page["keys"]:
                    click.echo(key)
            cursor = page.get("cursor")
            if not cursor:
                break
            if not every:
                click.echo(f"(more: --all, or the next page starts at cursor {cursor})", err=True)
                break

    @cli.command()
    @click.argument("key")
    @click.option("--value", is_flag=True, help="Show the value too (needs the admin token).")
    @admin_options()
    def inspect(key: str, value: bool, admin_url: str, token_env: str) -> None:
        """Show how each tier holds KEY: TTL, tags, size, age."""
        data = client(admin_url, token_env).entry(key, value)
        click.echo(f"key {data['key']}  ({data['full_key']})")
        for tier, info in data["tiers"].items():
            if "error" in info:
                click.echo(f"  {tier:<10} error: {info['error']}")
            elif not info["present"]:
                click.echo(f"  {tier:<10} -")
            else:
                expires = "never" if info["expires_in"] is None else f"{info['expires_in']:.1f}s"
                click.echo(
                    f"  {tier:<10} {'fresh' if info['fresh'] else 'stale'}  expires in {expires}  "
                    f"age {info['age']:.1f}s  size {info['size']}  tags {info['tags'] or '-'}"
                )
        if value:
            click.echo(f"value: {json.dumps(data.get('value'))}")

    @cli.command()
    @click.option("--warmer", "-w", "names", multiple=True, help="A warmer name (default: all).")
    @click.option("--reason", default="cli", show_default=True, help="Reason sent with it.")
    @admin_options()
    def warm(names: tuple[str, ...], reason: str, admin_url: str, token_env: str) -> None:
        """Run the application's registered warmers, with a progress bar."""
        api = client(admin_url, token_env)
        known = api.warmers()
        chosen = list(names) or known
        if not chosen:
            raise click.ClickException("the application has no registered warmers")
        unknown = [n for n in chosen if n not in known]
        if unknown:
            raise click.ClickException(f"unknown warmer(s) {unknown}; known: {known}")
        events = api.warm_progress(chosen, reason)
        total = next(events).get("total")
        summary: dict[str, Any] = {}
        progress: Any = click.progressbar(length=total or 0, label="warming", file=sys.stderr)
        with progress as bar:
            for event in events:
                if "summary" in event:
                    summary = event["summary"]
                elif total:
                    bar.update(event["done"] - bar.pos)
                else:
                    click.echo(f"\rwarming: {event['done']:,} done", nl=False, err=True)
        warmed, failed = summary.get("warmed", 0), summary.get("failed", 0)
        click.echo(f"warmed {warmed} entries with {len(chosen)} warmer(s), {failed} failed")
        if failed:
            raise SystemExit(1)

    @cli.command()
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--reason", default="cli", show_default=True, help="Reason sent with it.")
    @admin_options()
    def flush(yes: bool, reason: str, admin_url: str, token_env: str) -> None:
        """Remove every entry of a running application's cache namespace."""
        api = client(admin_url, token_env)
        if not yes:
            click.confirm(f"Remove every entry behind {api.base_url}?", abort=True)
        result = api.flush(reason)
        click.echo(f"flushed namespace {result['flushed']!r}")

    @cli.group()
    def admin() -> None:
        """Run the admin API."""

    @admin.command()
    @click.option("--namespace", "-n", required=True, help="The cache's namespace.")
    @click.option("--redis-url", envvar="REDIS_URL", default=None, help="Redis tier (and bus).")
    @click.option(
        "--sqlite",
        "sqlite_path",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="SQLite file of the SQL tier (must exist).",
    )
    @click.option("--sql-url", default=None, help="SQLAlchemy URL of the SQL tier.")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8081, show_default=True)
    @click.option("--token-env", default=TOKEN_ENV, show_default=True, help="Admin token variable.")
    @click.option(
        "--read-token-env",
        default="STRATACACHE_ADMIN_READ_TOKEN",
        show_default=True,
        help="Read-scope token variable.",
    )
    @click.option("--allow-anonymous", is_flag=True, help="No token: loopback clients only.")
    def serve(
        namespace: str,
        redis_url: str | None,
        sqlite_path: str | None,
        sql_url: str | None,
        host: str,
        port: int,
        token_env: str,
        read_token_env: str,
        allow_anonymous: bool,
    ) -> None:
        """Serve the admin API (and dashboard) standalone for a cache on shared tiers."""
        try:
            import uvicorn
        except ImportError:
            raise click.ClickException(
                "serving the admin API needs the web extra: pip install 'stratacache[web]'"
            ) from None

        from ..cli import shared_tiers
        from ..engine.cache import Cache
        from ..tiers.memory import MemoryTier
        from .app import AdminAPI

        tiers = shared_tiers(redis_url, sqlite_path, sql_url)
        if not tiers:
            raise click.UsageError(
                "name a tier: --redis-url (or $REDIS_URL), --sqlite or --sql-url"
            )
        bus: Any = False  # without Redis no other process can be told (and none to hear)
        if redis_url:
            from ..fleet.bus import RedisBus

            bus = RedisBus(url=redis_url)
        cache = Cache([MemoryTier(), *tiers], namespace=namespace, bus=bus)
        api = AdminAPI(
            cache,
            token=os.environ.get(token_env) or None,
            read_token=os.environ.get(read_token_env) or None,
            allow_anonymous=allow_anonymous,
        )
        click.echo(f"stratacache admin API for {namespace!r} on http://{host}:{port}", err=True)
        uvicorn.run(api, host=host, port=port, log_level="warning")
