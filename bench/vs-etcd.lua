-- wrk script for bench/vs-etcd.sh: the same load against raft-kv's HTTP API
-- and etcd's JSON gateway, aimed at one node (the leader).
--
--   wrk ... -s bench/vs-etcd.lua http://LEADER -- SYSTEM OP KEYS
--
-- SYSTEM is raft-kv or etcd; OP is put (a 100-byte value to the next key)
-- or get (a linearizable read of the next key). Keys rotate through KEYS
-- names, bench-000000 and up (the script writes them all first, so every
-- read finds its key); each thread starts at its own place. Every
-- connection sends its next request when the answer to the last arrives.
--
-- done() prints one line for the shell script to read:
--   RESULT requests=N duration_us=N status_errors=N socket_errors=N p50_us=N p99_us=N
--          samples=N histogram_ok=0|1 wrk_p50_us=N wrk_p99_us=N
-- status_errors are answers with a status of 400 or more (wrk's own count,
-- so no response() callback slows the runs); socket_errors are wrk's
-- connect, read, write and timeout errors (a timeout is an answer slower
-- than wrk's --timeout). The percentiles are of the measured latencies
-- (see measured_histogram); wrk_p50_us and wrk_p99_us are wrk's own.

local VALUE_BYTES = 100
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function digit(shift)
      local d = math.floor(n / 2 ^ shift) % 64
      return B64:sub(d + 1, d + 1)
    end
    out[#out + 1] = digit(18) .. digit(12) .. (b and digit(6) or "=") .. (c and digit(0) or "=")
  end
  return table.concat(out)
end

local threads_started = 0

function setup(thread)
  thread:set("thread_index", threads_started)
  threads_started = threads_started + 1
end

local requests = {}
local next_key = 0
local key_count = 0

function init(args)
  local system, op = args[1], args[2]
  key_count = tonumber(args[3])
  assert(system == "raft-kv" or system == "etcd", "SYSTEM must be raft-kv or etcd, not " .. tostring(system))
  assert(op == "put" or op == "get", "OP must be put or get, not " .. tostring(op))
  assert(key_count and key_count >= 1, "KEYS must be a positive number")
  local value = string.rep("0123456789", VALUE_BYTES / 10)
  local json = { ["Content-Type"] = "application/json" }
  for i = 0, key_count - 1 do
    local key = string.format("bench-%06d", i)
    local r
    if system == "raft-kv" and op == "get" then
      r = wrk.format("GET", "/kv/" .. key)
    elseif system == "raft-kv" then
      r = wrk.format("PUT", "/kv/" .. key, nil, value)
    elseif op == "get" then
      -- A range is linearizable unless the request says serializable.
      r = wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. base64(key) .. '"}')
    else
      r = wrk.format("POST", "/v3/kv/put", json,
        '{"key":"' .. base64(key) .. '","value":"' .. base64(value) .. '"}')
    end
    requests[i + 1] = r
  end
  -- Spread the threads over the key space so that they do not move in step.
  next_key = math.floor(thread_index * key_count / 7) % key_count
end

function request()
  local r = requests[next_key + 1]
  next_key = (next_key + 1) % key_count
  return r
end

-- wrk 4 "corrects" its latency histogram for coordinated omission before
-- done() sees it (stats_correct in its stats.c): every sample of n >= 2E µs,
-- where E is the run's mean time per request on one connection, also adds
-- one sample at each of n - E, n - 2E, ... while above E. That models an
-- open-loop client; ours is closed-loop (each connection waits for its
-- answer), so we undo it. Since the added samples of n land at n - kE, the
-- corrected count at m > E is the measured count at m plus the corrected
-- count at m + E: measured(m) = corrected(m) - corrected(m + E).
local function measured_histogram(latency, expected_us)
  local corrected, values = {}, {}
  for i = 1, #latency do
    local value, count = latency(i)
    corrected[value] = count
    values[#values + 1] = value
  end
  local measured, total = {}, 0
  for _, v in ipairs(values) do
    local count = corrected[v]
    if expected_us > 0 and v > expected_us then
      count = count - (corrected[v + expected_us] or 0)
    end
    assert(count >= 0, "undoing wrk's latency correction went negative at " .. v .. " us")
    measured[#measured + 1] = { v, count }
    total = total + count
  end
  return measured, total
end

-- The same rank rule as wrk's stats_percentile.
local function percentile(histogram, total, p)
  local rank = math.floor(p / 100 * total + 0.5 + 0.5)
  local seen = 0
  for _, entry in ipairs(histogram) do
    seen = seen + entry[2]
    if seen >= rank then
      return entry[1]
    end
  end
  return 0
end

function done(summary, latency, requests)
  local e = summary.errors
  -- wrk's expected interval: runtime over requests per connection.
  local connections = tonumber(os.getenv("VS_ETCD_CONNECTIONS") or "")
  assert(connections, "VS_ETCD_CONNECTIONS must give the run's connection count")
  local per_connection = math.floor(summary.requests / connections)
  local expected = per_connection > 0 and math.floor(summary.duration / per_connection) or 0
  local histogram, samples = measured_histogram(latency, expected)
  -- Every answer is one sample, except those past --timeout (not recorded,
  -- counted as timeouts): a check that the correction was undone exactly.
  local histogram_ok = samples + e.timeout == summary.requests and 1 or 0
  io.write(string.format(
    "RESULT requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d"
      .. " samples=%d histogram_ok=%d wrk_p50_us=%d wrk_p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    percentile(histogram, samples, 50), percentile(histogram, samples, 99),
    samples, histogram_ok, latency:percentile(50), latency:percentile(99)))
end
