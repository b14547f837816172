-- POST /v1/links/resolve with one of the prepared 1,000-id bodies (env: TOKEN, BODIES_DIR, BODIES).
local token = os.getenv("TOKEN")
local dir = os.getenv("BODIES_DIR")
local n = tonumber(os.getenv("BODIES"))
local bodies = {}
for i = 1, n do
  local f = io.open(dir .. "/body" .. i .. ".json", "rb"); bodies[i] = f:read("*a"); f:close()
end
local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("POST", "/v1/links/resolve", headers, bodies[i])
end
