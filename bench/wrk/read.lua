-- Linearizable reads: GET /v1/kv/<prefix>/<i> (default consistency) of keys
-- that bench/http_load.py wrote beforehand, i in [0, count).
-- Arguments after `--`: the key prefix and the number of keys.

dofile((string.gsub(debug.getinfo(1, "S").source, "^@(.*)read%.lua$", "%1common.lua")))

local prefix = "bench-read"
local count = 1000

function init(args)
   if args[1] ~= nil then prefix = args[1] end
   if args[2] ~= nil then count = tonumber(args[2]) end
   -- Each thread walks the keys from its own offset.
   counter = (thread_id * 7919) % count
end

function request()
   counter = counter + 1
   return wrk.format("GET", string.format("/v1/kv/%s/%d", prefix, counter % count))
end
