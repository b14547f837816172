-- wrk -s intake.lua: POST the 20 KB Fathom body with a distinct, pre-signed webhook-id per request
-- (signatures come from SIGNATURES, one "id timestamp v1,sig" per line; each thread takes its share).
local counter = 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local f = io.open(os.getenv("BODY_FILE"), "rb"); body = f:read("*a"); f:close()
  signed = {}
  local i = 0
  for line in io.lines(os.getenv("SIGNATURES")) do
    if i % nthreads == tid then
      local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
      table.insert(signed, {id, ts, sig})
    end
    i = i + 1
  end
  path = os.getenv("TARGET_PATH")
end

function request()
  local s = signed[counter]
  counter = counter + 1
  if counter > #signed then counter = 1 end
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = s[1], ["webhook-timestamp"] = s[2], ["webhook-signature"] = s[3],
  }, body)
end
