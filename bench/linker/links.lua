-- GET /v1/links by a random external id of the seeded messages (env: TOKEN, FIRST, COUNT).
local token = os.getenv("TOKEN")
local first = tonumber(os.getenv("FIRST"))
local count = tonumber(os.getenv("COUNT"))
local headers = {["Authorization"] = "Bearer " .. token}
math.randomseed(os.time())
request = function()
  local ext = first + math.random(0, count - 1)
  return wrk.format("GET", "/v1/links?workspace_id=bench&source=gong&external_id=" .. string.format("%d", ext), headers)
end
