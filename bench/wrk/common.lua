-- Shared by write.lua and read.lua (loaded with dofile): per-thread ids,
-- counting non-2xx answers in response(), and one machine-readable result
-- line from done() for bench/http_load.py to parse.

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

counter = 0
bad = 0
first_bad = ""

function count_response(status, body)
   if status < 200 or status > 299 then
      bad = bad + 1
      if first_bad == "" then
         first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 120)
      end
   end
end

function response(status, headers, body)
   count_response(status, body)
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local non2xx, first = 0, ""
   for _, thread in ipairs(threads) do
      non2xx = non2xx + thread:get("bad")
      local f = thread:get("first_bad")
      if first == "" and f ~= nil then first = f end
   end
   local e = summary.errors
   io.write(string.format(
      "GRAFT_WRK_RESULT {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d," ..
      "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d," ..
      "\"status_errors\":%d,\"timeouts\":%d,\"p50_us\":%d,\"p90_us\":%d," ..
      "\"p99_us\":%d,\"max_us\":%d,\"first_bad\":%s}\n",
      summary.requests, summary.duration, non2xx,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, json_string(first)))
end
