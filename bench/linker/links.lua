-- GET /v1/links by a random external id of the seeded messages (env: TOKEN, PREFIX, COUNT).
local token = os.getenv("TOKEN")
local prefix = os.getenv("PREFIX")
local count = tonumber(os.getenv("COUNT"))
local headers = {["Authorization"] = "Bearer " .. token}
math.randomseed(os.time())
request = function()
  local ext = prefix .. string.format("%011d", math.random(0, count - 1))
  return wrk.format("GET", "/v1/links?workspace_id=bench&source=gong&external_id=" .. ext, headers)
end

-- With STATUSES set (the uncached run, where a response callback costs nothing measurable), the
-- answers that were not 2xx are counted by status and printed as "statuses: 503=12 ...".
if os.getenv("STATUSES") then
  local threads = {}
  setup = function(thread) table.insert(threads, thread) end
  statuses = {}
  response = function(status, headers, body)
    if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end
  end
  done = function(summary, latency, requests)
    local parts = {}
    for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do table.insert(parts, status .. "=" .. n) end
    end
    io.write("statuses: " .. table.concat(parts, " ") .. "\n")
  end
end
