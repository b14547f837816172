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
