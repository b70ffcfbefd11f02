"""Hand-written mutants of the Redis store's Lua scripts (mutmut does not mutate Lua).

Each mutant is one small, realistic slip in `serving/contact_store/redis_store.py`: the text it
replaces (which must occur exactly once) and the replacement. `mutate.py` runs the Redis tests
against each one; a mutant is killed when they fail.
"""

from __future__ import annotations

from typing import NamedTuple


class LuaMutant(NamedTuple):
    name: str
    old: str
    new: str


LUA_MUTANTS: tuple[LuaMutant, ...] = (
    # reservation: windows and counts
    LuaMutant("window includes its far end (ZCOUNT [since instead of (since)",
              "local function since(days) return '(' .. ", "local function since(days) return '' .. "),
    LuaMutant("contacts later than now are not counted",
              "redis.call('ZCOUNT', key, since(days), '+inf')", "redis.call('ZCOUNT', key, since(days), now_s)"),
    LuaMutant("a window one day short", "string.format('%.6f', now - days * DAY)",
              "string.format('%.6f', now - (days - 1) * DAY)"),
    LuaMutant("cooldown includes its last instant",
              "if t and now - tonumber(t) < days * DAY then return 1 end",
              "if t and now - tonumber(t) <= days * DAY then return 1 end"),
    LuaMutant("cooldown ends a day early",
              "if t and now - tonumber(t) < days * DAY then return 1 end",
              "if t and now - tonumber(t) < (days - 1) * DAY then return 1 end"),
    LuaMutant("outbound cap counts only the first channel",
              "for _, ch in ipairs(c.ch) do n = n + count(base .. ':ch:' .. ch, c.days) end",
              "n = count(base .. ':ch:' .. c.ch[1], c.days)"),
    LuaMutant("shows counted per category", "return count(base .. ':of:' .. o.o, c.days)",
              "return count(base .. ':of:' .. o.cat, c.days)"),
    LuaMutant("category cooldown keyed by offer", "return declined(base .. ':dcc', o.cat, c.days)",
              "return declined(base .. ':dcc', o.o, c.days)"),
    LuaMutant("offer cooldown keyed by category", "return declined(base .. ':dco', o.o, c.days)",
              "return declined(base .. ':dco', o.cat, c.days)"),
    LuaMutant("contact cap: >= instead of >", "if measure(c, nil) + c.add > c.max then",
              "if measure(c, nil) + c.add >= c.max then"),
    LuaMutant("contact cap forgets the contact being made", "if measure(c, nil) + c.add > c.max then",
              "if measure(c, nil) > c.max then"),
    LuaMutant("offer cap: >= instead of >", "if measure(c, o) + c.add > c.max then r = c.r",
              "if measure(c, o) + c.add >= c.max then r = c.r"),
    LuaMutant("offer cap forgets the show being made", "if measure(c, o) + c.add > c.max then r = c.r",
              "if measure(c, o) > c.max then r = c.r"),
    LuaMutant("the last refusing contact cap names the reason", "then reason = c.r break end",
              "then reason = c.r end"),
    LuaMutant("the last refusing offer cap names the reason", "then r = c.r break end", "then r = c.r end"),
    LuaMutant("contact caps skipped", "for _, c in ipairs(cfg.contact) do", "for _, c in ipairs({}) do"),
    LuaMutant("a duplicate offer reserved twice", "  if not seen[o.o] then\n", "  if true then\n"),
    # reservation: writes
    LuaMutant("an empty answer counts as a contact", "if #ok > 0 then zadd(base .. ':ch:' .. channel, did) end",
              "zadd(base .. ':ch:' .. channel, did)"),
    LuaMutant("history trimmed a day early", "local floor = string.format('%.6f', now - ttl)",
              "local floor = string.format('%.6f', now - ttl + DAY)"),
    LuaMutant("a reused decision id is recorded again",
              "if redis.call('EXISTS', dkey) == 1 then return redis.error_reply('DUPLICATE decision') end", ""),
    LuaMutant("logged n_offers counts refused offers", "'n_offers', #ok,", "'n_offers', #offers,"),
    LuaMutant("every show logged at rank 1", "table.insert(logged, {o = o.o, cat = o.cat, r = i, p = o.p})",
              "table.insert(logged, {o = o.o, cat = o.cat, r = 1, p = o.p})"),
    # feedback
    LuaMutant("a later outcome always replaces the stored one (accepted not final)",
              "if rank[outcome] > (rank[current] or 0) then", "if outcome ~= current then"),
    LuaMutant("the same outcome again moves its timestamp", "if rank[outcome] > (rank[current] or 0) then",
              "if rank[outcome] >= (rank[current] or 0) then"),
    LuaMutant("a repeated decline of one show moves the cooldown",
              "redis.call('HSETNX', dkey, 'dec:' .. offer, ts) == 1", "redis.call('HSET', dkey, 'dec:' .. offer, ts) >= 0"),
    LuaMutant("an earlier decline reported later shortens the cooldown",
              "if (not prev) or tonumber(prev) < tonumber(ts) then", "if true then"),
    LuaMutant("a later decline does not extend the cooldown",
              "if (not prev) or tonumber(prev) < tonumber(ts) then", "if not prev then"),
    LuaMutant("a decline sets no category cooldown", "{{':dco', offer}, {':dcc', cat}}", "{{':dco', offer}}"),
    LuaMutant("feedback on an offer not in the decision is accepted", "if not cat then return 0 end",
              "if not cat then return 1 end"),
    LuaMutant("any negative outcome starts a cooldown", "if outcome == 'declined' and", "if outcome ~= 'accepted' and"),
    # forget
    LuaMutant("forget keeps the decision log",
              "do redis.call('DEL', prefix .. ':d:' .. d) end", "do end"),
    LuaMutant("forget keeps the declines", "base .. ':log', base .. ':dco', base .. ':dcc')", "base .. ':log')"),
)
