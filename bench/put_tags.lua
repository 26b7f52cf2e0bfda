-- wrk script for bench/run: PUT one manifest under many tags, fast.
-- Arguments (after --): path prefix (/v2/<repo>/manifests/), tags per thread,
-- tag prefix, manifest file, its media type.
-- Thread i PUTs tags <prefix>t<i>-1, -2, ... and stops once `per` of them are
-- answered. A few more may be in flight then (and wrk may drop a request
-- when it reconnects), so the caller counts the tags in the registry afterwards.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix, per, tagprefix = args[1], tonumber(args[2]), args[3]
  local f = assert(io.open(args[4], "rb"))
  body = f:read("*a")
  f:close()
  headers = { ["Content-Type"] = args[5] }
  sent, ok, bad, stopped = 0, 0, 0, false
end

function request()
  sent = sent + 1
  return wrk.format("PUT", prefix .. tagprefix .. "t" .. id .. "-" .. sent, headers, body)
end

function response(status, hdrs, b)
  if status == 201 then ok = ok + 1 else bad = bad + 1 end
  if ok + bad >= per and not stopped then
    -- wrk's main thread sleeps out its -d duration regardless: this line
    -- tells the caller to end it with SIGINT once every thread is done.
    stopped = true
    io.write("thread done\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
  end
  io.write(string.format("seeded ok=%d bad=%d\n", o, b))
end
