"""The ``stratacache`` command: the demo, and the operator's commands.

``click`` is the ``[cli]`` extra; ``main`` says how to install it when it is
missing instead of failing with an ImportError traceback, which is why the
commands are built inside ``build_cli`` rather than at import time. Every
error ends in one ``error: ...`` line and a non-zero exit code, never a
traceback.

Commands that talk to a running application through its admin API
(``--admin-url`` or ``$STRATACACHE_ADMIN_URL``; the token in
``$STRATACACHE_ADMIN_TOKEN``)::

    stratacache stats [--json]
    stratacache keys [--prefix P] [--limit N] [--all]
    stratacache inspect KEY [--value]
    stratacache invalidate (--key K | --tag T | --prefix P)... [--reason R]
    stratacache warm [--warmer NAME]...
    stratacache flush --yes
    stratacache admin serve --namespace NS (--redis-url | --sqlite | --sql-url) [--port 8081]

Commands that work on the shared tiers directly (no running application needed)::

    stratacache demo [--keys N --requests N --seconds S --zipf S --redis-url URL --sqlite PATH]
    stratacache invalidate --namespace NS (--key K | --tag T | --prefix P)... [--redis-url | --sqlite]
    stratacache clear --namespace NS [--redis-url | --sqlite] --yes
    stratacache stats --metrics-url http://127.0.0.1:9464/metrics [--json]

Direct ``invalidate`` and ``clear`` act on the shared tiers (Redis, SQL) and,
when a Redis URL is given, publish on the invalidation bus so every running
process drops its in-process copies too.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .metrics.scrape import format_stats, parse_exposition, scrape_stats

if TYPE_CHECKING:
    import click

    from .core.tier import Tier
    from .engine.cache import Cache

INSTALL_HINT = "the stratacache command needs click: pip install 'stratacache[cli]'"


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``stratacache``)."""
    try:
        import click
    except ImportError:
        sys.stderr.write(f"error: {INSTALL_HINT}\n")
        raise SystemExit(2) from None
    cli = build_cli()
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="stratacache",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(1) from None
    except click.exceptions.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:  # one line for the operator, whatever went wrong
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        raise SystemExit(1) from None


def build_cli() -> click.Group:
    """The click command group (built on demand so importing this module never needs click)."""
    import click

    from .admin import cli as remote
    from .admin.cli import admin_options

    redis_option = click.option(
        "--redis-url",
        envvar="REDIS_URL",
        default=None,
        help="Redis tier URL (default: $REDIS_URL).",
    )
    sqlite_option = click.option(
        "--sqlite",
        "sqlite_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="SQLite file of the SQL tier.",
    )
    existing_sqlite_option = click.option(
        "--sqlite",
        "sqlite_path",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="SQLite file of the SQL tier (must exist).",
    )
    sql_url_option = click.option(
        "--sql-url", default=None, help="SQLAlchemy URL of the SQL tier (e.g. PostgreSQL)."
    )
    namespace_option = click.option(
        "--namespace", "-n", required=True, help="The cache's namespace."
    )
    optional_namespace = click.option(
        "--namespace", "-n", default=None, help="The cache's namespace (direct mode)."
    )

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="stratacache", prog_name="stratacache")
    def cli() -> None:
        """stratacache: a multi-level cache (in-process LRU -> Redis -> SQL)."""

    @cli.command()
    @click.option("--keys", default=10_000, show_default=True, help="Distinct keys (products).")
    @click.option(
        "--requests", type=int, default=None, help="Stop after this many requests [default: none]."
    )
    @click.option("--seconds", default=12.0, show_default=True, help="Stop after this long.")
    @click.option("--zipf", default=1.1, show_default=True, help="Zipf exponent of the key stream.")
    @click.option("--concurrency", default=16, show_default=True, help="Concurrent workers.")
    @click.option(
        "--delay-ms", default=5.0, show_default=True, help="Artificial latency of the source."
    )
    @click.option("--memory-size", default=1_000, show_default=True, help="L1 entries.")
    @click.option("--seed", type=int, default=None, help="Seed of the key stream.")
    @click.option("--no-redis", is_flag=True, help="Ignore $REDIS_URL: memory + SQLite only.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress line.")
    @redis_option
    @sqlite_option
    def demo(
        keys: int,
        requests: int | None,
        seconds: float,
        zipf: float,
        concurrency: int,
        delay_ms: float,
        memory_size: int,
        seed: int | None,
        no_redis: bool,
        quiet: bool,
        redis_url: str | None,
        sqlite_path: str | None,
    ) -> None:
        """Run a Zipf workload over a slow source through the tiers and print the results.

        Memory + SQLite by default; Redis sits between them when --redis-url or
        $REDIS_URL is set.
        """
        from .core.errors import StratacacheError
        from .demo import DemoConfig, render, run_demo

        config = DemoConfig(
            keys=keys,
            requests=requests,
            seconds=seconds,
            zipf=zipf,
            concurrency=concurrency,
            delay_ms=delay_ms,
            memory_size=memory_size,
            redis_url=None if no_redis else redis_url,
            sqlite_path=sqlite_path,
            seed=seed,
            progress=not quiet,
        )
        try:  # bad options, an unusable --sqlite, an unreachable Redis: one line, exit 1
            result = asyncio.run(run_demo(config))
        except StratacacheError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(render(result), nl=False)

    @cli.command()
    @optional_namespace
    @click.option("--key", "-k", "keys", multiple=True, help="A key to remove (repeatable).")
    @click.option("--tag", "-t", "tags", multiple=True, help="A tag to invalidate (repeatable).")
    @click.option("--prefix", "-p", "prefixes", multiple=True, help="A key prefix (repeatable).")
    @click.option("--reason", default="cli", show_default=True, help="Reason sent with it.")
    @admin_options(required=False)
    @redis_option
    @existing_sqlite_option
    @sql_url_option
    def invalidate(
        namespace: str | None,
        keys: tuple[str, ...],
        tags: tuple[str, ...],
        prefixes: tuple[str, ...],
        reason: str,
        admin_url: str | None,
        token_env: str,
        redis_url: str | None,
        sqlite_path: str | None,
        sql_url: str | None,
    ) -> None:
        """Invalidate keys, tags or key prefixes in every tier and every process.

        Through a running application's admin API with --admin-url, else directly
        on the shared tiers named by --redis-url/--sqlite/--sql-url (needs --namespace).
        """
        if not (keys or tags or prefixes):
            raise click.UsageError("give at least one --key, --tag or --prefix")
        if admin_url:
            api = remote.client(admin_url, token_env)
            click.echo(
                remote.remote_invalidate(api, list(keys), list(tags), list(prefixes), reason)
            )
            return
        if namespace is None:
            raise click.UsageError("give --admin-url (a running application) or --namespace")

        async def run(cache: Cache) -> None:
            await cache.invalidate(keys=keys, tags=tags, prefix=prefixes, reason=reason)

        names = _run_on(namespace, redis_url, sqlite_path, sql_url, run)
        what = ", ".join(
            f"{len(items)} {label}"
            for items, label in ((keys, "key(s)"), (tags, "tag(s)"), (prefixes, "prefix(es)"))
            if items
        )
        click.echo(f"invalidated {what} in namespace {namespace!r} on {', '.join(names)}")

    @cli.command()
    @namespace_option
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @redis_option
    @existing_sqlite_option
    @sql_url_option
    def clear(
        namespace: str,
        yes: bool,
        redis_url: str | None,
        sqlite_path: str | None,
        sql_url: str | None,
    ) -> None:
        """Remove every entry of a namespace from every shared tier and every process."""
        if not yes:
            click.confirm(f"Remove every entry of namespace {namespace!r}?", abort=True)

        async def run(cache: Cache) -> None:
            await cache.clear()

        names = _run_on(namespace, redis_url, sqlite_path, sql_url, run)
        click.echo(f"cleared namespace {namespace!r} on {', '.join(names)}")

    @cli.command()
    @click.option(
        "--metrics-url",
        envvar="STRATACACHE_METRICS_URL",
        default=None,
        help="The /metrics URL of a process that exports stratacache metrics.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @admin_options(required=False)
    def stats(
        metrics_url: str | None, as_json: bool, admin_url: str | None, token_env: str
    ) -> None:
        """Show hits, misses, hit rates, breakers and bus state of a running application.

        Read from its admin API (--admin-url), or from a Prometheus /metrics
        endpoint (--metrics-url, e.g. stratacache.metrics.start_http_server).
        """
        if admin_url:
            click.echo(remote.show_stats(remote.client(admin_url, token_env), as_json), nl=False)
            return
        if not metrics_url:
            raise click.UsageError("give --admin-url or --metrics-url")
        try:
            data = scrape_stats(metrics_url)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read {metrics_url}: {exc}") from exc
        if as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            click.echo(format_stats(data), nl=False)

    remote.add_commands(cli)
    return cli


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- helpers (plain functions: testable without click) -------------------------------------------
def shared_tiers(redis_url: str | None, sqlite_path: str | None, sql_url: str | None) -> list[Tier]:
    """The shared tiers named on the command line, top-down."""
    import stratacache as sc

    tiers: list[Tier] = []
    if redis_url:
        tiers.append(sc.RedisTier(url=redis_url))
    if sqlite_path:
        tiers.append(sc.SQLTier(url=f"sqlite:///{sqlite_path}"))
    if sql_url:
        tiers.append(sc.SQLTier(url=sql_url, name="sql" if not sqlite_path else "sql2"))
    return tiers


def _run_on(
    namespace: str,
    redis_url: str | None,
    sqlite_path: str | None,
    sql_url: str | None,
    action: Any,
) -> list[str]:
    """Run ``action(cache)`` on a cache over the given shared tiers (and the bus, with Redis)."""
    import click

    from .core.errors import StratacacheError
    from .engine.cache import Cache

    tiers = shared_tiers(redis_url, sqlite_path, sql_url)
    if not tiers:
        raise click.UsageError("name a tier: --redis-url (or $REDIS_URL), --sqlite or --sql-url")
    bus = _bus(redis_url)

    async def run() -> None:
        async with Cache(tiers, namespace=namespace, bus=bus) as cache:
            await action(cache)
            failed = [n for n, d in cache.stats()["tiers"].items() if d["errors"]]
            if failed:
                raise click.ClickException(f"tier(s) failed: {', '.join(failed)} (see the log)")

    try:
        asyncio.run(run())
    except StratacacheError as exc:
        raise click.ClickException(str(exc)) from exc
    return [t.name for t in tiers] + (["the invalidation bus"] if bus is not None else [])


def _bus(redis_url: str | None) -> Any:
    """A Redis invalidation bus on ``redis_url`` so running processes drop their L1 copies."""
    if not redis_url:
        return None
    try:
        from .fleet.bus import RedisBus
    except ImportError:  # a build without the bus: shared tiers are still invalidated
        return None
    return RedisBus(url=redis_url)


__all__ = [
    "build_cli", "format_stats", "main", "parse_exposition", "scrape_stats", "shared_tiers",
]  # fmt: skip

if __name__ == "__main__":
    main()
