-- Writes: PUT /v1/kv/<prefix>/<thread>/<n> with a ~100-byte JSON value, a
-- distinct key per request (per-thread counter + thread id).
-- Arguments after `--`: the key prefix (distinct per run).

dofile((string.gsub(debug.getinfo(1, "S").source, "^@(.*)write%.lua$", "%1common.lua")))

local prefix = "bench"
local headers = { ["Content-Type"] = "application/json" }
local pad = string.rep("x", 64)

function init(args)
   if args[1] ~= nil then prefix = args[1] end
end

function request()
   counter = counter + 1
   local path = string.format("/v1/kv/%s/%d/%d", prefix, thread_id, counter)
   -- {"n":123456,"t":1,"pad":"xxx...","ok":true} ~ 100 bytes
   local body = string.format('{"n":%10d,"t":%3d,"pad":"%s","ok":true}', counter, thread_id, pad)
   return wrk.format("PUT", path, headers, body)
end
