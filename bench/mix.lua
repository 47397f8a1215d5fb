-- The 1,000-key mix: each thread cycles through pre-formatted requests, one
-- per key of the file given after "--" (with the request path), starting at
-- a different place per thread. Pre-formatting keeps wrk's own per-request
-- cost to a table lookup.
--   wrk ... -s bench/mix.lua URL -- <path> <keys file>
local threads = 0

setup = function(thread)
	threads = threads + 1
	thread:set("tid", threads)
end

local reqs = {}
local i = 0

init = function(args)
	local path, file = args[1], args[2]
	for key in io.lines(file) do
		if key ~= "" then
			reqs[#reqs + 1] = wrk.format("GET", path, { ["apikey"] = key })
		end
	end
	if #reqs == 0 then
		error("no keys in " .. tostring(file))
	end
	i = ((tid or 1) * 379) % #reqs
end

request = function()
	i = i % #reqs + 1
	return reqs[i]
end

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT %d %d %d %d %d %d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
