-- wrk script of bench/run.sh: every request carries one of the pre-created
-- session cookies, rotating through the file (one "name=value" per line).
--   wrk ... -s rot.lua URL -- PATH COOKIEFILE NTHREADS
-- Each wrk thread starts at its own offset (thread k at k * N / NTHREADS), so the
-- threads do not walk the same cookies in lockstep: parallel requests with one
-- session stay as rare as with real users, and locking cases measure locking
-- cost, not artificial contention.
local nthreads_seen = 0
function setup(thread)
  thread:set("tid", nthreads_seen)
  nthreads_seen = nthreads_seen + 1
end

local cookies = {}
local i = 0
local path = "/"

function init(args)
  path = args[1]
  for line in io.lines(args[2]) do
    if #line > 0 then cookies[#cookies + 1] = line end
  end
  local n = tonumber(args[3]) or 1
  i = math.floor((tid or 0) * #cookies / n)
end

function request()
  i = i + 1
  local c = cookies[(i % #cookies) + 1]
  return wrk.format("GET", path, {["Cookie"] = c})
end
