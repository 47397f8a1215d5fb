-- Prints one machine-readable line when wrk is done:
-- RESULT <requests> <duration µs> <p50 µs> <p99 µs> <status >= 400> <socket errors>
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT %d %d %d %d %d %d\n",
		summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
