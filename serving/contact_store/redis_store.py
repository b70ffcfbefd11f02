"""The Redis contact store: for several service replicas sharing one Redis.

Check-and-reserve is one Lua script, so Redis runs it atomically: no other command runs between
reading the counts and writing the contact. Keys of one customer share the hash tag `{customer_id}`;
the decision log is keyed by decision id. Every key expires `horizon_days` after its last write, so
Redis holds the history the caps need and no more (except `prefix:forgotten`, the hashes of erased
customers, which must outlive the horizon) (copy the decision log out for off-policy
evaluation within the horizon). Designed for a single Redis (or a primary with replicas/Sentinel),
not Redis Cluster: scripts touch the customer's keys and the decision key, which may sit in different slots.

Layout under `prefix` (B = `prefix:{customer_id}`):
    B:ch:<channel>  zset decision_id -> ts      contacts per channel
    B:of:<offer_id> zset decision_id -> ts      shows per offer
    B:log           zset json record -> ts      every show (history, export)
    B:dco / B:dcc   hash offer / category -> last decline ts
    B:decs / B:keys set of the customer's decision ids / keys (for forget)
    B:imp           set "decision_id offer_id" of the shows imported from the data (`import_history`)
    B:cons          set json {ch, ts, g}         runtime consent changes (`record_consent`; no expiry)
    B:ev            hash event_id -> json        events posted at runtime (`append_events`; no expiry)
    prefix:forgotten set                        erased customers (`forgotten_key` hashes), for every worker
    prefix:d:<decision_id> hash                 the decision log entry and its outcomes
    B:ob            set of the customer's outbox ids (for forget)
    prefix:ob:seq   counter                      the last outbox id
    prefix:ob:rows  hash outbox id -> json       the outbox rows (programmes; settled rows pruned)
    prefix:ob:keys  hash trigger key -> id       trigger occurrences fired (claimed once)
    prefix:ob:all / prefix:ob:st:<status> zset   outbox ids (score = id), all and per status
    prefix:lease:<name> string owner (expiring) a periodic job's lease (`lease`: the in-service sweep)
    prefix:ob:settled zset id -> updated         settled rows (`OUTBOX_SETTLED`), pruned after
                                                 `outbox_retention_days` (`outbox_prune`)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import redis

from nbo.errors import ConfigError
from serving.contact_store.base import (
    DAY,
    OUTCOME_RANK,
    ContactHistory,
    ContactRecord,
    ConsentChange,
    ContactStore,
    CustomerState,
    EventConflict,
    LiveEvent,
    OfferRef,
    OUTBOX_SETTLED,
    OutboxEntry,
    ReserveRequest,
    ReserveResult,
    check_outcome,
    check_propensities,
    consent_records,
    event_records,
    forgotten_key,
    from_epoch,
    imported_shows,
    outbox_records,
    to_epoch,
    unique_events,
)
from serving.caps import lua_config
from serving.policy import ContactPolicy

log = logging.getLogger(__name__)

_RESERVE = r"""
local base, dkey = KEYS[1], KEYS[2]
local now_s = ARGV[1]  -- kept as text: Lua would print numbers with 14 significant digits only
local now = tonumber(now_s)
local channel = ARGV[2]
local cfg = cjson.decode(ARGV[3])
local offers = cjson.decode(ARGV[4])
local did, cid, mv = ARGV[5], ARGV[6], ARGV[7]
local ttl = tonumber(ARGV[8])
if redis.call('EXISTS', dkey) == 1 then return redis.error_reply('DUPLICATE decision') end
local DAY = 86400
local function since(days) return '(' .. string.format('%.6f', now - days * DAY) end
local function count(key, days) return redis.call('ZCOUNT', key, since(days), '+inf') end
local function declined(key, field, days)  -- 1 if the last decline of `field` is in the window
  local t = redis.call('HGET', key, field)
  if t and now - tonumber(t) < days * DAY then return 1 end
  return 0
end
-- The measures of serving.caps; cfg lists the caps of this decision (serving.caps.lua_config).
local function measure(c, o)
  if c.m == 'contacts' then
    local n = 0
    for _, ch in ipairs(c.ch) do n = n + count(base .. ':ch:' .. ch, c.days) end
    return n
  elseif c.m == 'shows' then return count(base .. ':of:' .. o.o, c.days)
  elseif c.m == 'offer_declines' then return declined(base .. ':dco', o.o, c.days)
  elseif c.m == 'category_declines' then return declined(base .. ':dcc', o.cat, c.days)
  end
  error('unknown measure ' .. tostring(c.m))
end
local reason = false
for _, c in ipairs(cfg.contact) do
  if measure(c, nil) + c.add > c.max then reason = c.r break end
end
local ok, refused, seen = {}, {}, {}
for _, o in ipairs(offers) do
  if not seen[o.o] then
    seen[o.o] = true
    local r = reason
    if not r then
      for _, c in ipairs(cfg.offer) do
        if measure(c, o) + c.add > c.max then r = c.r break end
      end
    end
    if r then table.insert(refused, {o.o, r}) else table.insert(ok, o) end
  end
end
local floor = string.format('%.6f', now - ttl)
local touched = {}
local function zadd(key, member)
  redis.call('ZADD', key, now_s, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. floor)
  redis.call('EXPIRE', key, ttl)
  table.insert(touched, key)
end
local logged = {}
for i, o in ipairs(ok) do
  zadd(base .. ':of:' .. o.o, did)
  zadd(base .. ':log', cjson.encode({d = did, o = o.o, cat = o.cat, ch = channel, ts = now_s, r = i, p = o.p}))
  table.insert(logged, {o = o.o, cat = o.cat, r = i, p = o.p})
end
if #ok > 0 then zadd(base .. ':ch:' .. channel, did) end
for _, k in ipairs(touched) do redis.call('SADD', base .. ':keys', k) end
redis.call('SADD', base .. ':decs', did)
redis.call('EXPIRE', base .. ':keys', ttl)
redis.call('EXPIRE', base .. ':decs', ttl)
local encoded = '[]'
if #logged > 0 then encoded = cjson.encode(logged) end
redis.call('HSET', dkey, 'customer_id', cid, 'channel', channel, 'ts', now_s,
  'n_offers', #ok, 'model_versions', mv, 'offers', encoded, 'base', base)
redis.call('EXPIRE', dkey, ttl)
local oks = {}
for _, o in ipairs(ok) do table.insert(oks, o.o) end
return cjson.encode({ok = oks, refused = refused})
"""

_OUTCOME = r"""
local dkey = KEYS[1]
local offer, outcome, ts, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rank = cjson.decode(ARGV[5])  -- base.OUTCOME_RANK: the stored outcome only moves up
if redis.call('EXISTS', dkey) == 0 then return 0 end
local cat = nil
for _, o in ipairs(cjson.decode(redis.call('HGET', dkey, 'offers'))) do
  if o.o == offer then cat = o.cat end
end
if not cat then return 0 end
local current = redis.call('HGET', dkey, 'out:' .. offer) or 'pending'
if rank[outcome] > (rank[current] or 0) then
  redis.call('HSET', dkey, 'out:' .. offer, outcome, 'ots:' .. offer, ts)
end
if outcome == 'declined' and redis.call('HSETNX', dkey, 'dec:' .. offer, ts) == 1 then
  local base = redis.call('HGET', dkey, 'base')
  for _, pair in ipairs({{':dco', offer}, {':dcc', cat}}) do
    local key = base .. pair[1]
    local prev = redis.call('HGET', key, pair[2])
    if (not prev) or tonumber(prev) < tonumber(ts) then redis.call('HSET', key, pair[2], ts) end
    redis.call('EXPIRE', key, ttl)
  end
end
return 1
"""

_RANKS = json.dumps(OUTCOME_RANK)

#: One customer's shows from the data's contacts table (`import_history`), written to the keys
#: the reservation script reads; B:imp makes it idempotent. Imported shows get no decision log
#: entry and are not in B:decs (so not in `contact_rows`); the log entry carries r = 0.
_IMPORT = r"""
local base, ttl = KEYS[1], tonumber(ARGV[2])
local n = 0
local touched = {}
local function zadd(key, ts, member)
  redis.call('ZADD', key, ts, member)
  touched[key] = true
end
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if redis.call('SADD', base .. ':imp', s.d .. ' ' .. s.o) == 1 then
    n = n + 1
    zadd(base .. ':ch:' .. s.ch, s.ts, s.d)
    zadd(base .. ':of:' .. s.o, s.ts, s.d)
    zadd(base .. ':log', s.ts, cjson.encode({d = s.d, o = s.o, cat = s.cat, ch = s.ch, ts = s.ts, r = 0, p = s.p}))
    if s.dec then
      for _, pair in ipairs({{':dco', s.o}, {':dcc', s.cat}}) do
        local key = base .. pair[1]
        local prev = redis.call('HGET', key, pair[2])
        if (not prev) or tonumber(prev) < tonumber(s.dec) then redis.call('HSET', key, pair[2], s.dec) end
        touched[key] = true
      end
    end
  end
end
touched[base .. ':imp'] = true
for k, _ in pairs(touched) do
  redis.call('SADD', base .. ':keys', k)
  redis.call('EXPIRE', k, ttl)
end
redis.call('EXPIRE', base .. ':keys', ttl)
return n
"""

_FORGET = r"""
local base, prefix = KEYS[1], ARGV[1]
local n = redis.call('ZCARD', base .. ':log')
for _, d in ipairs(redis.call('SMEMBERS', base .. ':decs')) do redis.call('DEL', prefix .. ':d:' .. d) end
for _, k in ipairs(redis.call('SMEMBERS', base .. ':keys')) do redis.call('DEL', k) end
redis.call('DEL', base .. ':keys', base .. ':decs', base .. ':log', base .. ':dco', base .. ':dcc', base .. ':cons',
  base .. ':ev')
redis.call('SADD', KEYS[2], ARGV[2])
return n
"""


#: The outbox (serving/programmes.py). Rows are JSON in one hash; ids come from a counter; the
#: status sets let `outbox_page` read one status in id order. KEYS: seq, rows, keys, all, prefix
#: of the status sets, the customer's B:ob. ARGV: trigger key, json row without id.
_OUTBOX_CLAIM = r"""
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[1])
local row = cjson.decode(ARGV[2])
row.id = id
redis.call('HSET', KEYS[2], id, cjson.encode(row))
redis.call('HSET', KEYS[3], ARGV[1], id)
redis.call('ZADD', KEYS[4], id, id)
redis.call('ZADD', KEYS[5] .. row.status, id, id)
redis.call('SADD', KEYS[6], id)
return id
"""
#: Set fields of rows (ARGV: json {field: value}, then ids) whose status is ARGV[2] (any if "").
#: KEYS: rows, status-set prefix, settled zset. Returns the status of each id after ("" if unknown).
#: A row that settles (`OUTBOX_SETTLED`) enters the settled zset, scored by its `updated` time.
_OUTBOX_UPDATE = r"""
local settled = {""" + ", ".join(f"[{s!r}] = true" for s in OUTBOX_SETTLED) + r"""}
local changes = cjson.decode(ARGV[1])
local only = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if not raw then
    table.insert(out, '')
  else
    local row = cjson.decode(raw)
    if only == '' or row.status == only then
      local before = row.status
      for k, v in pairs(changes) do row[k] = v end
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(row))
      if row.status ~= before then
        redis.call('ZREM', KEYS[2] .. before, ARGV[i])
        redis.call('ZADD', KEYS[2] .. row.status, tonumber(ARGV[i]), ARGV[i])
      end
      if settled[row.status] then redis.call('ZADD', KEYS[3], row.updated, ARGV[i]) end
    end
    table.insert(out, row.status)
  end
end
return out
"""
#: Settled rows last changed before ARGV[1] deleted, up to 1000 a call (`outbox_prune`); returns
#: how many ids were taken from the settled zset. KEYS: settled, rows, keys, all, status-set
#: prefix; ARGV[2]: the store's prefix (for each customer's B:ob).
_OUTBOX_PRUNE = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local row = cjson.decode(raw)
    redis.call('HDEL', KEYS[3], row.key)
    redis.call('ZREM', KEYS[5] .. row.status, id)
    redis.call('SREM', ARGV[2] .. ':{' .. row.customer_id .. '}:ob', id)
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""
#: A lease (`lease`): taken when free or ours (renewed). KEYS: the lease; ARGV: owner, milliseconds.
_LEASE = r"""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
#: A lease given up if ours. KEYS: the lease; ARGV: owner.
_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
#: A customer's outbox rows erased (`forget`). KEYS: rows, keys, all, status-set prefix, B:ob, settled.
_OUTBOX_FORGET = r"""
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local row = cjson.decode(raw)
    redis.call('HDEL', KEYS[2], row.key)
    redis.call('ZREM', KEYS[4] .. row.status, id)
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[6], id)
end
redis.call('DEL', KEYS[5])
return 1
"""
#: The row fields of the JSON form, in `OutboxEntry` order after the id.
_OUTBOX_FIELDS = ("key", "programme", "customer_id", "fired", "status", "updated", "scheduled", "channel", "offer_id",
                  "decision_id", "reason")


#: Events of one call, all or nothing: every id is checked first (a recorded id with other content
#: -> the index of the first conflict, nothing written), then the new ones are set. KEYS: one
#: B:ev hash per event; ARGV: event_id, json pairs.
_EVENTS = r"""
for i, key in ipairs(KEYS) do
  local got = redis.call('HGET', key, ARGV[2 * i - 1])
  if got and got ~= ARGV[2 * i] then return -i end
end
local n = 0
for i, key in ipairs(KEYS) do n = n + redis.call('HSETNX', key, ARGV[2 * i - 1], ARGV[2 * i]) end
return n
"""
#: Events per script call: a script blocks Redis while it runs (about 1 ms per 1,000 events).
_EVENTS_PER_CALL = 1000


def _event_json(e: LiveEvent) -> str:
    """The stored form of an event: canonical, so a repeat of the same event compares equal."""
    return json.dumps([repr(e.ts), e.type, e.channel, e.category, e.product_id,
                       None if e.amount is None else repr(float(e.amount))], separators=(",", ":"))


def _event(customer_id: str, event_id: str, raw: str) -> LiveEvent:
    ts, kind, channel, category, product, amount = json.loads(raw)
    return LiveEvent(event_id, customer_id, float(ts), kind, channel, category, product,
                     None if amount is None else float(amount))


@dataclass(frozen=True)
class RedisPersistence:
    """What a Redis server keeps across a restart (`CONFIG GET appendonly / appendfsync / save`)."""

    appendonly: bool
    appendfsync: str  # "always", "everysec" or "no" (meaningful with appendonly only)
    save: str  # RDB snapshot rules, "" when snapshots are off

    @property
    def volatile(self) -> bool:
        """Neither the append-only file nor snapshots: a restart loses every cap counter."""
        return not self.appendonly and not self.save.strip()

    def describe(self) -> str:
        if self.appendonly:
            loss = {"always": "nothing acknowledged", "everysec": "up to the last second of writes"}.get(
                self.appendfsync, "the writes not yet flushed by the operating system (about 30 s)")
            return f"append-only file on (appendfsync {self.appendfsync}): a crash loses {loss}"
        if self.save.strip():
            return (f"snapshots only (save {self.save!r}): a crash loses every contact since the last snapshot; "
                    "turn on the append-only file (appendonly yes)")
        return "no persistence (appendonly no, save \"\"): a restart loses every cap counter and the decision log"


def redis_persistence(client: redis.Redis) -> RedisPersistence:
    """Read the server's persistence settings; `redis.ResponseError` if CONFIG is not allowed."""
    got: dict[str, str] = {}
    for name in ("appendonly", "appendfsync", "save"):
        got.update({RedisContactStore._s(k): RedisContactStore._s(v) for k, v in client.config_get(name).items()})
    return RedisPersistence(got.get("appendonly", "no") == "yes", got.get("appendfsync", ""), got.get("save", ""))


def check_persistence(client: redis.Redis, accept_volatile: bool = False) -> RedisPersistence | None:
    """Refuse (ConfigError) a Redis whose caps would not survive a restart, unless `accept_volatile`.

    Call it once at start, before serving, with the store's client (`RedisContactStore.check_persistence`).
    A server without the append-only file and without snapshots loses every cap counter on a
    restart: refused, or a warning when accepted. Snapshots only, or `appendfsync no`, lose the
    recent contacts on a crash: a warning. A server that does not allow CONFIG (some managed
    services rename it), or cannot be reached now, cannot be checked: a warning, and None (the
    service starts and answers degraded until the store is back, unchecked).
    """
    try:
        p = redis_persistence(client)
    except redis.RedisError as exc:
        log.warning("cannot read the Redis persistence settings (%s: %s): make sure the server keeps its data "
                    "(appendonly yes), or caps reset when it restarts", type(exc).__name__,
                    str(exc).split("\n")[0][:120])
        return None
    if p.volatile and not accept_volatile:
        raise ConfigError(
            f"the Redis contact store has {p.describe()}: after a restart customers could be contacted past "
            "every cap. Turn on persistence (redis-server --appendonly yes, or CONFIG SET appendonly yes "
            "and CONFIG REWRITE), or accept it explicitly (--accept-volatile-redis)"
        )
    if p.volatile or not p.appendonly or p.appendfsync not in ("always", "everysec"):
        log.warning("Redis contact store: %s", p.describe())
    return p


class RedisContactStore(ContactStore):
    """Contact store in Redis; atomic check-and-reserve in Lua; keys expire after `horizon_days`."""

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "nbo",
        horizon_days: int = 90,
    ) -> None:
        if client is None:
            if url is None:
                raise ConfigError("RedisContactStore needs a client or a url (e.g. redis://127.0.0.1:6379/0)")
            client = redis.Redis.from_url(url, decode_responses=True)
        self.client = client
        self.prefix = prefix
        self.horizon_days = horizon_days
        self._ttl = int(horizon_days * DAY) + 1
        self._reserve = client.register_script(_RESERVE)
        self._outcome = client.register_script(_OUTCOME)
        self._forget = client.register_script(_FORGET)
        self._import = client.register_script(_IMPORT)
        self._events = client.register_script(_EVENTS)
        self._ob_claim = client.register_script(_OUTBOX_CLAIM)
        self._ob_update = client.register_script(_OUTBOX_UPDATE)
        self._ob_forget = client.register_script(_OUTBOX_FORGET)
        self._ob_prune = client.register_script(_OUTBOX_PRUNE)
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)

    def check_persistence(self, accept_volatile: bool = False) -> RedisPersistence | None:
        """`check_persistence` on this store's server: call once at start (service, batch scoring)."""
        return check_persistence(self.client, accept_volatile)

    def _base(self, customer_id: str) -> str:
        return f"{self.prefix}:{{{customer_id}}}"

    def _dkey(self, decision_id: str) -> str:
        return f"{self.prefix}:d:{decision_id}"

    @staticmethod
    def _s(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    @staticmethod
    def _cfg(channel: str, policy: ContactPolicy) -> str:
        """The caps of a decision on `channel`, for the reservation script (from `serving.caps`)."""
        return json.dumps(lua_config(policy, channel))

    def check_and_reserve_many(
        self, requests: list[ReserveRequest], now: datetime, policy: ContactPolicy
    ) -> list[ReserveResult | None]:
        """The reservation script once per request, all in one pipeline (one round trip).

        Each script runs atomically, in order, so the caps hold exactly as with one call per request.
        """
        for r in requests:
            check_propensities(r.offers, r.propensities)
        self.check_policy(policy)
        if not requests:
            return []
        now_s = repr(to_epoch(now))
        cfgs: dict[str, str] = {}
        pipe = self.client.pipeline(transaction=False)
        for r in requests:
            cfg = cfgs.get(r.channel) or cfgs.setdefault(r.channel, self._cfg(r.channel, policy))
            payload = [{"o": o.offer_id, "cat": o.category, "p": repr(float(r.propensities[o.offer_id]))} for o in r.offers]
            self._reserve(
                keys=[self._base(r.customer_id), self._dkey(r.decision_id)],
                args=[now_s, r.channel, cfg, json.dumps(payload) if payload else "[]", r.decision_id, r.customer_id,
                      json.dumps(dict(r.model_versions or {})), self._ttl],
                client=pipe,
            )
        out: list[ReserveResult | None] = []
        for r, raw in zip(requests, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(raw, redis.ResponseError):
                if "DUPLICATE" in str(raw):
                    out.append(None)
                    continue
                raise raw
            if isinstance(raw, Exception):
                raise raw
            result = json.loads(self._s(raw))
            ok_ids = result["ok"] if isinstance(result["ok"], list) else []
            refused = result["refused"] if isinstance(result["refused"], list) else []
            by_id = {o.offer_id: o for o in r.offers}
            out.append(ReserveResult(r.decision_id, tuple(by_id[i] for i in ok_ids),
                                     tuple((str(o), str(x)) for o, x in refused)))
        # The no-offer decisions' reason and probability on the log entries their scripts wrote (as
        # `check_and_reserve`: only a decision recorded now, never one recorded before): one more round trip.
        marked = [(r, res) for r, res in zip(requests, out, strict=True) if r.no_offer is not None and res is not None]
        if marked:
            pipe = self.client.pipeline(transaction=False)
            for r, _ in marked:
                pipe.hset(self._dkey(r.decision_id), mapping={"no": str(r.no_offer[0]), "np": repr(float(r.no_offer[1]))})  # type: ignore[index]
            pipe.execute()
        return out

    def histories(self, customer_ids: list[str], now: datetime) -> dict[str, ContactHistory]:
        """`history` of many customers in one pipeline (each customer's reads are not one snapshot:
        they are a pre-filter, the reservation script re-checks atomically)."""
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        ids = list(dict.fromkeys(customer_ids))
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            base = self._base(cid)
            pipe.zrangebyscore(f"{base}:log", f"({since:.6f}", "+inf")
            pipe.hgetall(f"{base}:dco")
            pipe.hgetall(f"{base}:dcc")
        raw = pipe.execute()
        out: dict[str, ContactHistory] = {}
        for i, cid in enumerate(ids):
            log, dco, dcc = raw[3 * i : 3 * i + 3]
            if not log and not dco and not dcc:
                continue
            out[cid] = self._make_history(cid, t, since, log, dco, dcc)
        return out

    def _make_history(self, customer_id: str, t: float, since: float, log: list, dco: dict, dcc: dict) -> ContactHistory:
        contacts = []
        for member in log:
            r = json.loads(self._s(member))
            contacts.append(ContactRecord(r["d"], r["o"], r["cat"], r["ch"], float(r["ts"])))

        def recent(h: dict) -> dict[str, float]:
            out = {self._s(k): float(self._s(v)) for k, v in h.items()}
            return {k: v for k, v in out.items() if v > since}

        return ContactHistory(customer_id, t, tuple(contacts), recent(dco), recent(dcc))

    def check_and_reserve(
        self,
        customer_id: str,
        channel: str,
        offers: list[OfferRef],
        now: datetime,
        policy: ContactPolicy,
        decision_id: str,
        propensities: Mapping[str, float],
        model_versions: Mapping[str, str] | None = None,
        no_offer: tuple[str, float] | None = None,
    ) -> ReserveResult:
        check_propensities(offers, propensities)
        self.check_policy(policy)
        payload = [{"o": o.offer_id, "cat": o.category, "p": repr(float(propensities[o.offer_id]))} for o in offers]
        try:
            raw = self._reserve(
                keys=[self._base(customer_id), self._dkey(decision_id)],
                args=[
                    repr(to_epoch(now)),
                    channel,
                    self._cfg(channel, policy),
                    json.dumps(payload) if payload else "[]",
                    decision_id,
                    customer_id,
                    json.dumps(dict(model_versions or {})),
                    self._ttl,
                ],
            )
        except redis.ResponseError as exc:
            if "DUPLICATE" in str(exc):
                raise ValueError(f"decision {decision_id!r} already recorded") from None
            raise
        result = json.loads(self._s(raw))
        ok_ids = result["ok"] if isinstance(result["ok"], list) else []
        refused = result["refused"] if isinstance(result["refused"], list) else []
        by_id = {o.offer_id: o for o in offers}
        if no_offer is not None:  # on the log entry the script wrote (it keeps the entry's expiry)
            self.client.hset(self._dkey(decision_id), mapping={"no": str(no_offer[0]), "np": repr(float(no_offer[1]))})
        return ReserveResult(
            decision_id, tuple(by_id[i] for i in ok_ids), tuple((str(o), str(r)) for o, r in refused)
        )

    def import_history(self, contacts: object, categories: Mapping[str, str], now: datetime) -> int:
        """The import script once per customer, in one pipeline."""
        by_customer: dict[str, list[dict[str, object]]] = {}
        for s in imported_shows(contacts, categories, to_epoch(now) - self.horizon_days * DAY):
            row: dict[str, object] = {"d": s.decision_id, "o": s.offer_id, "cat": s.category, "ch": s.channel,
                                      "ts": repr(s.ts), "p": repr(s.propensity)}
            if s.declined_ts is not None:  # absent, not null: cjson's null is true in Lua
                row["dec"] = repr(s.declined_ts)
            by_customer.setdefault(s.customer_id, []).append(row)
        if not by_customer:
            return 0
        n = 0
        items = list(by_customer.items())
        for lo in range(0, len(items), 500):  # round trips of 500 customers: each reply comes quickly
            pipe = self.client.pipeline(transaction=False)
            for cid, rows in items[lo : lo + 500]:
                self._import(keys=[self._base(cid)], args=[json.dumps(rows), self._ttl], client=pipe)
            n += sum(int(x) for x in pipe.execute())
        return n

    def history(self, customer_id: str, now: datetime) -> ContactHistory:
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        base = self._base(customer_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrangebyscore(f"{base}:log", f"({since:.6f}", "+inf")
        pipe.hgetall(f"{base}:dco")
        pipe.hgetall(f"{base}:dcc")
        log, dco, dcc = pipe.execute()
        return self._make_history(customer_id, t, since, log, dco, dcc)

    def record_outcome(self, decision_id: str, offer_id: str, outcome: str, ts: datetime) -> bool:
        check_outcome(outcome)
        done = self._outcome(keys=[self._dkey(decision_id)],
                             args=[offer_id, outcome, repr(to_epoch(ts)), self._ttl, _RANKS])
        return int(done) == 1

    def forget(self, customer_id: str) -> int:
        self._ob_forget(keys=[self._ob("rows"), self._ob("keys"), self._ob("all"), self._ob("st:"),
                              f"{self._base(customer_id)}:ob", self._ob("settled")])
        return int(self._forget(keys=[self._base(customer_id), self._forgotten_key],
                                args=[self.prefix, forgotten_key(customer_id)]))

    @property
    def _forgotten_key(self) -> str:
        """The set of erased customers (`forgotten_key` hashes; no expiry)."""
        return f"{self.prefix}:forgotten"

    def forgotten(self, customer_id: str) -> bool:
        return bool(self.client.sismember(self._forgotten_key, forgotten_key(customer_id)))

    def record_consent(self, customer_id: str, channel: str, granted: bool, ts: datetime) -> bool:
        """SADD of the change to B:cons (no expiry: a withdrawal outlives the contact horizon)."""
        member = json.dumps({"ch": channel, "ts": repr(to_epoch(ts)), "g": int(bool(granted))}, sort_keys=True)
        return int(self.client.sadd(f"{self._base(customer_id)}:cons", member)) == 1

    def _consents(self, members: object) -> tuple[ConsentChange, ...]:
        out = []
        for m in members:  # type: ignore[attr-defined]
            r = json.loads(self._s(m))
            out.append(ConsentChange(str(r["ch"]), float(r["ts"]), bool(r["g"])))
        return tuple(out)

    def consent_changes(self, customer_ids: list[str]) -> dict[str, tuple[ConsentChange, ...]]:
        ids = list(dict.fromkeys(customer_ids))
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            pipe.smembers(f"{self._base(cid)}:cons")
        return {cid: self._consents(raw) for cid, raw in zip(ids, pipe.execute(), strict=True) if raw}

    def append_events(self, events: list[LiveEvent]) -> int:
        """The events script per `_EVENTS_PER_CALL` events. All or nothing within a script; across
        scripts every id is checked before the first one writes, so only a concurrent writer of
        the same ids with other content between two scripts could leave a part written."""
        events = unique_events(events)
        if not events:
            return 0
        encoded = [_event_json(e) for e in events]
        pipe = self.client.pipeline(transaction=False)
        for e in events:
            pipe.hget(f"{self._base(e.customer_id)}:ev", e.event_id)
        for e, raw, mine in zip(events, pipe.execute(), encoded, strict=True):
            if raw is not None and self._s(raw) != mine:
                raise EventConflict(e)
        n = 0
        for lo in range(0, len(events), _EVENTS_PER_CALL):
            part = events[lo : lo + _EVENTS_PER_CALL]
            args: list[str] = []
            for e, raw in zip(part, encoded[lo : lo + _EVENTS_PER_CALL], strict=True):
                args += [e.event_id, raw]
            got = int(self._events(keys=[f"{self._base(e.customer_id)}:ev" for e in part], args=args))
            if got < 0:
                raise EventConflict(part[-got - 1])
            n += got
        return n

    def _live_events(self, customer_id: str, raw: dict) -> tuple[LiveEvent, ...]:
        return tuple(_event(customer_id, self._s(k), self._s(v)) for k, v in raw.items())

    def compact_events(self, until: float) -> int:
        """SCAN of the customers' event hashes (`prefix:{id}:ev`), HDEL of the events with
        `ts <= until`; an emptied hash is removed by Redis."""
        n = 0
        # The prefix escaped: its glob characters (`*?[]\`) would match other stores' keys.
        mine = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)
        for key in self.client.scan_iter(match=f"{mine}:{{*}}:ev", count=1000):
            raw = self.client.hgetall(key)
            old = [k for k, v in raw.items() if float(json.loads(self._s(v))[0]) <= until]
            if old:
                n += int(self.client.hdel(key, *old))
        return n

    def live_events(self, customer_ids: list[str]) -> dict[str, tuple[LiveEvent, ...]]:
        ids = list(dict.fromkeys(customer_ids))
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(f"{self._base(cid)}:ev")
        return {cid: self._live_events(cid, raw) for cid, raw in zip(ids, pipe.execute(), strict=True) if raw}

    # ---------------------------------------------------------------- the outbox
    def _ob(self, name: str) -> str:
        return f"{self.prefix}:ob:{name}"

    def outbox_claim(self, trigger_key: str, programme: str, customer_id: str, fired: datetime) -> int | None:
        import time

        row = {"key": trigger_key, "programme": programme, "customer_id": customer_id, "fired": to_epoch(fired),
               "status": "deciding", "updated": time.time()}
        got = int(self._ob_claim(keys=[self._ob("seq"), self._ob("rows"), self._ob("keys"), self._ob("all"),
                                       self._ob("st:"), f"{self._base(customer_id)}:ob"],
                                 args=[trigger_key, json.dumps(row)]))
        return got or None

    def _ob_set(self, ids: list[int], changes: dict[str, object], only: str = "") -> list[str]:
        return [self._s(s) for s in self._ob_update(keys=[self._ob("rows"), self._ob("st:"), self._ob("settled")],
                                                    args=[json.dumps(changes), only, *[str(int(i)) for i in ids]])]

    def outbox_settle(self, outbox_id: int, status: str, now: datetime, *, scheduled: datetime | None = None,
                      channel: str | None = None, offer_id: str | None = None, decision_id: str | None = None,
                      reason: str | None = None) -> None:
        changes: dict[str, object] = {"status": status, "updated": to_epoch(now)}
        optional = {"scheduled": None if scheduled is None else to_epoch(scheduled), "channel": channel,
                    "offer_id": offer_id, "decision_id": decision_id, "reason": reason}
        changes.update({k: v for k, v in optional.items() if v is not None})  # cjson cannot set a field to nil
        self._ob_set([outbox_id], changes)

    def _entry(self, raw: object) -> OutboxEntry:
        row = json.loads(self._s(raw))
        return OutboxEntry(int(row["id"]), *(row.get(f) for f in _OUTBOX_FIELDS))

    def outbox_page(self, status: str | None, since: datetime | None, after: int, limit: int) -> list[OutboxEntry]:
        index = self._ob("all") if status is None else self._ob(f"st:{status}")
        floor = None if since is None else to_epoch(since)
        out: list[OutboxEntry] = []
        cursor = int(after)
        while len(out) < limit:
            ids = self.client.zrangebyscore(index, f"({cursor}", "+inf", start=0, num=max(limit, 100))
            if not ids:
                break
            for raw in self.client.hmget(self._ob("rows"), ids):
                if raw is None:
                    continue
                e = self._entry(raw)
                if (floor is None or e.fired >= floor) and (status is None or e.status == status):
                    out.append(e)
                    if len(out) == limit:
                        break
            cursor = int(self._s(ids[-1]))
        return out

    def outbox_ack(self, outbox_ids: list[int], status: str, now: datetime) -> dict[int, str]:
        ids = [int(i) for i in dict.fromkeys(outbox_ids)]
        if not ids:
            return {}
        after = self._ob_set(ids, {"status": status, "updated": to_epoch(now)}, only="pending")
        return {i: s for i, s in zip(ids, after, strict=True) if s}

    def lease(self, name: str, owner: str, seconds: float) -> bool:
        return int(self._lease(keys=[f"{self.prefix}:lease:{name}"], args=[owner, max(1, int(seconds * 1000))])) == 1

    def release(self, name: str, owner: str) -> None:
        self._release(keys=[f"{self.prefix}:lease:{name}"], args=[owner])

    def outbox_rows(self, customer_id: str) -> list[OutboxEntry]:
        ids = sorted(int(self._s(i)) for i in self.client.smembers(f"{self._base(customer_id)}:ob"))
        if not ids:
            return []
        return [self._entry(raw) for raw in self.client.hmget(self._ob("rows"), ids) if raw is not None]

    def outbox_cancel(self, customer_id: str, before: datetime, now: datetime, reason: str) -> list[int]:
        """The customer's pending rows scheduled before `before` (read from B:ob), each cancelled
        by the update script only if it is still pending then (a concurrent ack wins)."""
        cutoff = to_epoch(before)
        due = [e.outbox_id for e in self.outbox_rows(customer_id)
               if e.status == "pending" and e.scheduled is not None and e.scheduled < cutoff]
        if not due:
            return []
        after = self._ob_set(due, {"status": "cancelled", "updated": to_epoch(now), "reason": reason}, only="pending")
        return [i for i, s in zip(due, after, strict=True) if s == "cancelled"]

    def outbox_prune(self, now: datetime, retention_days: float) -> int:
        cutoff = repr(to_epoch(now) - retention_days * DAY)
        n = 0
        while True:
            got = int(self._ob_prune(keys=[self._ob("settled"), self._ob("rows"), self._ob("keys"), self._ob("all"),
                                           self._ob("st:")], args=[cutoff, self.prefix]))
            n += got
            if got < 1000:
                return n

    def export(self, customer_id: str) -> dict[str, list[dict[str, object]]]:
        base = self._base(customer_id)
        held = self._export(self.client.smembers(f"{base}:decs"))
        held["consents"] = consent_records(self._consents(self.client.smembers(f"{base}:cons")))
        held["events"] = event_records(self._live_events(customer_id, self.client.hgetall(f"{base}:ev")))
        held["outbox"] = outbox_records(self.outbox_rows(customer_id))
        return held

    def _queue_reads(self, pipe: redis.client.Pipeline, customer_id: str, since: float) -> None:
        """Queue the seven reads of one customer's state on `pipe`, in the order `read_customer`
        unpacks them: decision ids, the log since `since`, the decisions' offers and categories,
        the erasure flag, consents and live events."""
        base = self._base(customer_id)
        pipe.smembers(f"{base}:decs")
        pipe.zrangebyscore(f"{base}:log", f"({since:.6f}", "+inf")
        pipe.hgetall(f"{base}:dco")
        pipe.hgetall(f"{base}:dcc")
        pipe.sismember(self._forgotten_key, forgotten_key(customer_id))
        pipe.smembers(f"{base}:cons")
        pipe.hgetall(f"{base}:ev")

    def read_customer(self, customer_id: str, now: datetime) -> CustomerState:
        """Two round trips instead of three: the decision ids and the history in one pipeline
        (MULTI), then the decisions' log entries."""
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        pipe = self.client.pipeline(transaction=True)
        self._queue_reads(pipe, customer_id, since)
        decs, log, dco, dcc, forgotten, cons, ev = pipe.execute()
        history = self._make_history(customer_id, t, since, log, dco, dcc)
        return CustomerState(self._export(decs)["contacts"], history, bool(forgotten), self._consents(cons),
                             self._live_events(customer_id, ev))

    def read_customers(self, customer_ids: list[str], now: datetime) -> list[CustomerState]:
        """`read_customer` of each customer in two round trips in all (not two each): every
        customer's reads in one pipeline, then every decision's log entry in another. The
        pipeline is not a transaction (its keys hash to several slots), so each customer's reads
        are not one snapshot: a pre-filter, as `histories`; the reservation script re-checks."""
        t = to_epoch(now)
        since = t - self.horizon_days * DAY
        pipe = self.client.pipeline(transaction=False)
        for cid in customer_ids:
            self._queue_reads(pipe, cid, since)
        raw = pipe.execute()
        per = [raw[7 * i : 7 * i + 7] for i in range(len(customer_ids))]
        ids = [sorted(self._s(d) for d in decs) for decs, *_ in per]
        pipe = self.client.pipeline(transaction=False)
        for decision_ids in ids:
            for d in decision_ids:
                pipe.hgetall(self._dkey(d))
        entries = iter(pipe.execute())
        out = []
        for cid, (_, log, dco, dcc, forgotten, cons, ev), decision_ids in zip(customer_ids, per, ids, strict=True):
            held = self._export_entries(decision_ids, [next(entries) for _ in decision_ids])
            out.append(CustomerState(held["contacts"], self._make_history(cid, t, since, log, dco, dcc), bool(forgotten),
                                     self._consents(cons), self._live_events(cid, ev)))
        return out

    def _export(self, decision_ids_raw: object) -> dict[str, list[dict[str, object]]]:
        """`export` of the customer whose decision ids these are."""
        decision_ids = sorted(self._s(d) for d in decision_ids_raw)  # type: ignore[attr-defined]
        pipe = self.client.pipeline(transaction=False)
        for d in decision_ids:
            pipe.hgetall(self._dkey(d))
        return self._export_entries(decision_ids, pipe.execute())

    def _export_entries(self, decision_ids: list[str], entries: list) -> dict[str, list[dict[str, object]]]:
        """`_export` from the decisions' log entries (`HGETALL` of each id, in the same order)."""
        decisions, contacts = [], []
        for d, h in zip(decision_ids, entries, strict=True):
            if not h:
                continue
            h = {self._s(k): self._s(v) for k, v in h.items()}
            ts = from_epoch(float(h["ts"]))
            decisions.append(
                {
                    "decision_id": d,
                    "customer_id": h["customer_id"],
                    "channel": h["channel"],
                    "ts": ts,
                    "n_offers": int(h["n_offers"]),
                    "model_versions": json.loads(h["model_versions"]),
                    "no_offer": h.get("no"),
                    "no_offer_propensity": float(h["np"]) if "np" in h else None,
                }
            )
            offers = json.loads(h["offers"])
            for o in offers if isinstance(offers, list) else []:
                ots = h.get(f"ots:{o['o']}")
                contacts.append(
                    {
                        "decision_id": d,
                        "offer_id": o["o"],
                        "customer_id": h["customer_id"],
                        "category": o["cat"],
                        "channel": h["channel"],
                        "ts": ts,
                        "rank": int(o["r"]),
                        "propensity": float(o["p"]),
                        "outcome": h.get(f"out:{o['o']}", "pending"),
                        "outcome_ts": None if ots is None else from_epoch(float(ots)),
                    }
                )
        decisions.sort(key=lambda r: (r["ts"], r["decision_id"]))
        contacts.sort(key=lambda r: (r["ts"], r["decision_id"], r["rank"]))
        return {"decisions": decisions, "contacts": contacts}

    def close(self) -> None:
        self.client.close()
