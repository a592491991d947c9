"""The fleet lock's protocol, shared by its async and blocking drivers.

The Lua scripts, the timings and the reply decoding that ``fleet.lock`` (asyncio)
and ``fleet.blocking_lock`` (threads) both speak, so that sync and async callers
in different processes take, renew, release and wait on one lock alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.fleet import LockAttempt

#: KEYS[1] lock; ARGV[1] token, ARGV[2] lease ms. {1, token, pttl} when taken, else
#: {0, holder token, holder pttl}.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, ARGV[1], tonumber(ARGV[2])}
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
"""

#: KEYS[1] lock; ARGV[1] token, ARGV[2] channel. Deletes and announces only our own lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
return 0
"""

#: KEYS[1] lock; ARGV[1] token, ARGV[2] lease ms. Extends only our own lock.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: the scripts by name, loaded once per client
SCRIPTS = (("acquire", _ACQUIRE), ("release", _RELEASE), ("renew", _RENEW))
RECENT = 4096  # releases remembered, for waiters whose wake-up raced their registration
POLL_MIN, POLL_MAX = 0.01, 0.5  # backoff while the subscription is down
#: the server did not answer (refused, reset, timed out): a starting lock asks it nothing
#: more (the other scripts are loaded on first use) and does not wait for its subscription,
#: which keeps trying in the background; waiters poll meanwhile
UNANSWERED = (RedisConnectionError, RedisTimeoutError, OSError)


#: seconds between the attempts to release a lost acquire's token (the last one repeats)
ORPHAN_RETRY = (0.05, 0.1, 0.2, 0.4)


def orphan_delays(lease: float) -> Iterator[float]:
    """Delays before each attempt to release the token of an acquire that got no answer.

    The server may still run it once it answers again (a hung Redis runs what it had
    read), leaving a lock nobody holds: other processes' misses of the key would wait for
    it until its lease ends. The release deletes only that token's lock (and wakes the
    waiters); the attempts stop when the lease would have run out anyway.
    """
    spent = 0.0
    step = 0
    while spent < lease:
        delay = min(ORPHAN_RETRY[min(step, len(ORPHAN_RETRY) - 1)], lease - spent)
        step += 1
        spent += delay
        yield delay


def text(value: Any) -> str:
    """A reply as text (clients may be built with or without ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def attempt(reply: Any) -> LockAttempt:
    """The acquire script's reply as a ``LockAttempt`` (who holds it, for how long)."""
    owned, holder, pttl = reply
    return LockAttempt(bool(owned), text(holder), max(int(pttl), 0) / 1000)
