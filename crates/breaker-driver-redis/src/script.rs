//! The server-side steps of the store contract, each one atomic round trip: a Lua script
//! for compare-and-swap (version check, new version, value, expiry and the change
//! notification in one step) and one for load.
//!
//! A record is a hash `{PREFIX:NAME}:r` with fields `v` (version) and `d` (the encoded
//! record). Versions come from a counter `{PREFIX:NAME}:seq` that never expires, so a
//! version is never reused after the record expired. Both keys share the hash tag
//! `{PREFIX:NAME}`, hence one Redis Cluster slot. A value of ours under another type, or a
//! hash without our fields, reads as version 0 (which no write ever gets), so a breaker can
//! report it as corrupt and overwrite it by expecting version 0.

/// Reads the record: `{}` when absent, `{version, data}` otherwise.
pub(crate) const LOAD: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {} end
if t == 'hash' then
  local f = redis.call('HMGET', KEYS[1], 'v', 'd')
  if f[1] and f[2] then return {f[1], f[2]} end
  return {'0', ''}
end
if t == 'string' then return {'0', redis.call('GET', KEYS[1])} end
return {'0', ''}
"#;

/// Compare-and-swap. ARGV: expected version ('' for none), data, ttl in ms ('' for none),
/// change channel, breaker name. Publishes `NAME VERSION\nDATA` on the channel, so that
/// watchers get the new record with no round trip of their own. Returns `{1, new_version}`, or on conflict `{0}` (absent)
/// or `{0, version, data}`.
pub(crate) const SWAP: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
local v, d = '', ''
if t == 'hash' then
  local f = redis.call('HMGET', KEYS[1], 'v', 'd')
  if f[1] and f[2] then v, d = f[1], f[2] else v = '0' end
elseif t == 'string' then
  v, d = '0', redis.call('GET', KEYS[1])
elseif t ~= 'none' then
  v = '0'
end
if v ~= ARGV[1] then
  if t == 'none' then return {0} end
  return {0, v, d}
end
local nv = redis.call('INCR', KEYS[2])
if t ~= 'hash' or v == '0' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
if ARGV[3] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. nv .. '\n' .. ARGV[2])
return {1, nv}
"#;
