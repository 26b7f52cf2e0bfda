-- wrk script for bench/run: GET manifests by tags picked at random among
-- those bench/put_tags.lua made, so a large store is read across its whole
-- tag table rather than one hot tag (issue #14's 100,000-tag figure).
-- Arguments (after --): path prefix (/v2/<repo>/manifests/), Accept value,
-- then per-thread tag counts of each seeding stage (stage k made tags
-- s<k>t<0|1>-1 .. -<count>, two seeding threads each).
function init(args)
  prefix, accept = args[1], args[2]
  counts, total = {}, 0
  for i = 3, #args do
    counts[#counts + 1] = tonumber(args[i])
    total = total + 2 * tonumber(args[i])
  end
  headers = { ["Accept"] = accept }
  math.randomseed(os.time() + (wrk.thread and tonumber(tostring(wrk.thread):match("0x(%x+)") or "0", 16) or 0))
end

function request()
  local k = math.random(total) - 1
  for stage, per in ipairs(counts) do
    if k < 2 * per then
      local t = math.floor(k / per)
      return wrk.format("GET", prefix .. "s" .. (stage - 1) .. "t" .. t .. "-" .. (k % per + 1), headers)
    end
    k = k - 2 * per
  end
end
