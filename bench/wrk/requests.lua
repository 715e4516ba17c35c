-- wrk script for `make bench`: sends the requests of a file, in order, cycling when it runs out.
--
-- BENCH_REQUESTS  the file: raw HTTP/1.1 requests without bodies, back to back, each ending in CRLF CRLF
--                 (bench.py writes them; the request line and headers exactly as sent)
-- BENCH_START     the byte offset to start at: the measured run starts where the warm-up stopped, so one
--                 Envoy never gets a single-use request (a nonce) twice
--
-- Every case goes through this script, including those whose file holds one request (the same token every
-- time), so wrk does the same work per request in every case: one string.find and one string.sub. The file
-- is read in one piece (no per-line parsing at start-up, which took seconds for half a million requests).
-- done() prints one BENCH_JSON line (wrk's own figures) that bench.py parses.

local data = ""
local size = 0
pos = 1    -- globals: done() reads them from the thread with thread:get()
sent = 0   -- request() calls (one more than the requests sent: wrk calls it once to check the script)
wraps = 0  -- times the file was started again
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = assert(os.getenv("BENCH_REQUESTS"), "BENCH_REQUESTS is not set")
  local f = assert(io.open(path, "rb"))
  data = f:read("*a")
  f:close()
  size = #data
  assert(size > 0 and string.sub(data, -4) == "\r\n\r\n", "not a file of requests: " .. path)
  pos = tonumber(os.getenv("BENCH_START") or "0") + 1
  if pos > size then
    pos = 1
  end
end

function request()
  if pos > size then
    pos = 1
    wraps = wraps + 1
  end
  local e = string.find(data, "\r\n\r\n", pos, true)
  local r = string.sub(data, pos, e + 3)
  pos = e + 4
  sent = sent + 1
  return r
end

function done(summary, latency, requests)
  local offset, s, w = 0, 0, 0
  for _, t in ipairs(threads) do
    offset = (t:get("pos") or 1) - 1
    s = s + (t:get("sent") or 0)
    w = w + (t:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "stdev_us": %.1f, "max_us": %d, "offset": %d, "sent": %d, "wraps": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.stdev,
    latency.max, offset, s, w))
end
