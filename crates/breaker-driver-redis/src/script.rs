//! The server-side steps of the store contract, each one atomic round trip: a Lua script
//! for compare-and-swap (version check, new version, value, expiry and the change
//! notification in one step) and one for load.
//!
//! A record is a hash `{PREFIX/NAME}:r` with fields `v` (version) and `d` (the encoded
//! record): one key per breaker. A breaker that appends its outcomes
//! (`Policy::append_outcomes`) adds its log to the same hash: field `l`, the opaque deltas
//! in order, each behind one byte of its length, and `b`, the version the record was
//! written at (later versions are appends alone); both only while there is a log, so that
//! a breaker without one holds two fields as before. An append is one script (a new version,
//! the delta added, the expiry moved later, the change published); a compare-and-swap
//! writes the record afresh, log gone; a compaction writes it in place of the deltas it
//! folds and keeps those appended since. Builds before 0.2 also kept a version counter at
//! `{PREFIX/NAME}:seq`; this one writes none, but keeps counting one that an older agent
//! of a mixed fleet keeps, so that versions still only grow. Both share the hash tag
//! `{PREFIX/NAME}`, hence one Redis Cluster slot, and neither a prefix nor a name can hold
//! `/`, so no two breakers share a key. Every byte under these keys is untrusted: anything
//! that is not exactly what the script writes (another type, a hash without our fields, a
//! version that is not a canonical decimal, a value over the size limit, which is measured
//! in the server and never transferred) reads as version 0 with no data, which no write ever
//! gets, so a breaker reports it as corrupt and overwrites it by expecting version 0.
//!
//! Versions only grow and are never reused: a new record's version (after its breaker's
//! record expired, or replacing one that is not ours) is the server's clock in
//! microseconds, above any version handed out before, and each write adds one.

/// Reads the record and its version as they are, or as version 0 with no data when they are
/// not ours. Shared by both scripts. ARGV[1] is the size limit in bytes.
const CURRENT: &str = r#"
local function current(limit)
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t == 'none' then return t, nil, nil end
  if t ~= 'hash' then return t, '0', '' end
  local v = redis.call('HGET', KEYS[1], 'v')
  if not v or not string.match(v, '^[1-9]%d*$') or string.len(v) > 16
    or tonumber(v) > 9007199254740991 then return t, '0', '' end
  local size = redis.call('HSTRLEN', KEYS[1], 'd')
  if size == 0 or size > limit then return t, v, '' end
  return t, v, redis.call('HGET', KEYS[1], 'd')
end

-- The log beside the record: field `l`, its deltas in order, each behind one byte of its
-- length; '' when there is none, or when it is larger than any log of ours (ignored, and
-- appends refused, so the next write of the record replaces it).
local function log(t)
  if t ~= 'hash' then return '' end
  local size = redis.call('HSTRLEN', KEYS[1], 'l')
  if size == 0 or size > LOG_LIMIT then return '' end
  return redis.call('HGET', KEYS[1], 'l')
end

-- The change notification: `NAME VERSION[ LOGBYTES]\nDATA[LOG]`, so that watchers get the
-- record and its log with no round trip of their own.
local function publish(channel, name, version, d, l)
  local head = name .. ' ' .. version
  if l ~= '' then head = head .. ' ' .. string.len(l) end
  redis.call('PUBLISH', channel, head .. '\n' .. d .. l)
end
"#;

/// A script: the shared Lua functions, then `body`, with the log's size limit in.
fn script(body: &str) -> String {
    format!("{CURRENT}{body}").replace("LOG_LIMIT", &MAX_LOG_BYTES.to_string())
}

/// The most bytes a log holds (about a thousand deltas): past it, appends are refused and
/// the breaker writes its record by compare-and-swap, which empties the log. Breakers
/// write the view as the record long before (every 32 deltas); this bounds what a store
/// can be made to hold.
pub(crate) const MAX_LOG_BYTES: usize = 16 * 1024;

/// Reads the record: `{}` when absent, `{version, data, log}` otherwise. ARGV: size limit.
pub(crate) fn load() -> String {
    script(
        r#"
local t, v, d = current(tonumber(ARGV[1]))
if t == 'none' then return {} end
return {v, d, log(t)}
"#,
    )
}

/// Compare-and-swap. ARGV: expected version ('' for none), data, ttl in ms ('' for none),
/// change channel, breaker name, size limit. Everything is checked before anything is
/// written, so a write is all or nothing. Publishes `NAME VERSION\nDATA` on the channel, so
/// that watchers get the new record with no round trip of their own. Returns
/// `{1, new_version}`, or on conflict `{0}` (absent) or `{0, version, data, log}`.
pub(crate) fn swap() -> String {
    script(
        r#"
local ttl = nil
if ARGV[3] ~= '' then
  ttl = tonumber(ARGV[3])
  if not ttl or ttl < 1 or ttl > 281474976710656 then
    return redis.error_reply('breaker: expiry out of range: ' .. ARGV[3])
  end
end
local t, v, d = current(tonumber(ARGV[6]))
if t == 'none' then
  if ARGV[1] ~= '' then return {0} end
elseif v ~= ARGV[1] then
  return {0, v, d, log(t)}
end
local held = tonumber(v) or 0
local nv = nil
if redis.call('EXISTS', KEYS[2]) == 1 then
  -- The version counter of an older build, which counted there rather than in the record:
  -- it keeps counting for the agents that still use it, above the record's version. One
  -- that is not a counter of ours is deleted.
  local c = redis.pcall('INCR', KEYS[2])
  if type(c) == 'number' and c > 1 and c > held and c <= 9007199254740991 then
    nv = c
  else
    redis.call('DEL', KEYS[2])
  end
end
if not nv then
  if t == 'hash' and held > 0 and held < 9007199254740991 then
    nv = held + 1
  else
    -- A new record, or one that is not ours: start above every version handed out before.
    local now = redis.call('TIME')
    nv = tonumber(now[1]) * 1000000 + tonumber(now[2])
    if nv <= held then nv = held + 1 end
  end
end
-- Lua would print a number this large as 1.7e+15: versions are written as integers.
local version = string.format('%d', nv)
-- Written afresh where there is more than ours; the log goes (the new record folds it).
local fields = 0
if t == 'hash' then fields = redis.call('HLEN', KEYS[1]) end
if t ~= 'hash' or v == '0'
  or fields > 2 + redis.call('HEXISTS', KEYS[1], 'l') + redis.call('HEXISTS', KEYS[1], 'b') then
  redis.call('DEL', KEYS[1])
elseif fields > 2 then
  redis.call('HDEL', KEYS[1], 'l', 'b')
end
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2])
for _, key in ipairs(KEYS) do
  if ttl then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
publish(ARGV[4], ARGV[5], version, ARGV[2], '')
return {1, version}
"#,
    )
}

/// Append. ARGV: delta, ttl in ms ('' for none), change channel, breaker name, size limit,
/// '1' to publish the change ('' not to). Appends nothing and returns `{}` where there is
/// no record of ours to append to, the log is full (or not ours), or an older build's
/// version counter is beside the record (its agents count versions there, which only a
/// compare-and-swap keeps counting). Otherwise one version more, the delta behind its
/// length at the end of the log, the expiry moved to `ttl` from now if that is later
/// (`PEXPIRE ... GT`: a record without one keeps none), and the change published if asked;
/// returns `{version, data, log}`.
pub(crate) fn append() -> String {
    script(
        r#"
local ttl = nil
if ARGV[2] ~= '' then
  ttl = tonumber(ARGV[2])
  if not ttl or ttl < 1 or ttl > 281474976710656 then
    return redis.error_reply('breaker: expiry out of range: ' .. ARGV[2])
  end
end
if string.len(ARGV[1]) == 0 or string.len(ARGV[1]) > 255 then
  return redis.error_reply('breaker: a delta of ' .. string.len(ARGV[1]) .. ' bytes')
end
local t, v, d = current(tonumber(ARGV[5]))
if t ~= 'hash' or v == '0' or d == '' then return {} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local size = redis.call('HSTRLEN', KEYS[1], 'l')
local fields = 2
if size > 0 then fields = 4 end
if size >= LOG_LIMIT or redis.call('HLEN', KEYS[1]) ~= fields then return {} end
local held = tonumber(v)
if held >= 9007199254740991 then return {} end
local version = string.format('%d', held + 1)
local l = string.char(string.len(ARGV[1])) .. ARGV[1]
if size > 0 then
  l = redis.call('HGET', KEYS[1], 'l') .. l
else
  -- The log's first delta: the record was written at the version it holds now.
  redis.call('HSET', KEYS[1], 'b', v)
end
redis.call('HSET', KEYS[1], 'v', version, 'l', l)
if ttl then redis.call('PEXPIRE', KEYS[1], ttl, 'GT') else redis.call('PERSIST', KEYS[1]) end
if ARGV[6] == '1' then publish(ARGV[3], ARGV[4], version, d, l) end
return {version, d, l}
"#,
    )
}

/// Compaction. ARGV: expected version, deltas folded, data, ttl in ms ('' for none), change
/// channel, breaker name, size limit. Writes the record in place of the one at the
/// expected version and the first deltas of its log, keeping the rest, if the record was
/// only appended to since (`b` no later than the version expected); else a conflict, as a
/// compare-and-swap's. The expiry only moves later. Returns `{1, new_version}`, `{0}`
/// (absent) or `{0, version, data, log}`.
pub(crate) fn compact() -> String {
    script(
        r#"
local ttl = nil
if ARGV[4] ~= '' then
  ttl = tonumber(ARGV[4])
  if not ttl or ttl < 1 or ttl > 281474976710656 then
    return redis.error_reply('breaker: expiry out of range: ' .. ARGV[4])
  end
end
local t, v, d = current(tonumber(ARGV[7]))
if t == 'none' then return {0} end
local l = log(t)
local expected = tonumber(ARGV[1])
-- Without a log, the record was written at its version.
local b = v
if l ~= '' then b = redis.call('HGET', KEYS[1], 'b') end
if v == '0' or not b or not string.match(b, '^[1-9]%d*$') or string.len(b) > 16
  or tonumber(b) > expected or tonumber(v) < expected
  or redis.call('EXISTS', KEYS[2]) == 1 then
  return {0, v, d, l}
end
-- Past the deltas folded: each is one byte of length, then its bytes.
local pos = 1
for _ = 1, tonumber(ARGV[2]) do
  if pos > string.len(l) then return {0, v, d, l} end
  pos = pos + 1 + string.byte(l, pos)
end
if pos > string.len(l) + 1 then return {0, v, d, l} end
local rest = string.sub(l, pos)
local version = string.format('%d', tonumber(v) + 1)
if rest == '' then
  redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[3])
  redis.call('HDEL', KEYS[1], 'l', 'b')
else
  redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[3], 'b', version, 'l', rest)
end
if ttl then redis.call('PEXPIRE', KEYS[1], ttl, 'GT') else redis.call('PERSIST', KEYS[1]) end
publish(ARGV[5], ARGV[6], version, ARGV[3], rest)
return {1, version}
"#,
    )
}
