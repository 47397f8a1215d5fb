-- Case (f): a GraphQL query through keygate's graphql endpoint with a read key.
-- wrk -s bench/graphql.lua <url> -- <key>
local key
init = function(args)
	key = args[1]
end
request = function()
	return wrk.format("POST", "/mce/api/graphql", {
		["Content-Type"] = "application/json",
		["apikey"] = key,
	}, '{"query":"query Assets($site: String) { assets(site: $site) { assetnum status } }","variables":{"site":"BEDFORD"}}')
end
-- Prints one machine-readable line when wrk is done, like report.lua.
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT %d %d %d %d %d %d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
