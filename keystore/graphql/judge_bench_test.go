package graphql

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// query2KB is a dashboard query as a client library sends it: named
// operation, variables, aliases, named and inline fragments.
const query2KB = `query Dashboard($site: String!, $first: Int = 20, $after: String, $status: [String!]) {
  critical: assets(site: $site, priority: 1, first: $first, after: $after) {
    ...AssetPage
  }
  others: assets(site: $site, priority: 2, first: $first) {
    ...AssetPage
  }
  pump: asset(id: "PUMP-1001") {
    ...AssetDetail
    meters { name lastReading { value unit takenAt } }
  }
  open: workOrders(site: $site, status: $status, first: $first, orderBy: {field: REPORTED, direction: DESC}) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ...WorkOrderRow } }
  }
  ... on Query {
    late: workOrders(site: $site, overdue: true, first: 5) {
      edges { node { ...WorkOrderRow assignedTo { id displayName email phone } } }
    }
  }
  __typename
}

fragment AssetPage on AssetConnection {
  totalCount
  pageInfo { hasNextPage endCursor }
  edges { cursor node { ...AssetDetail } }
}

fragment AssetDetail on Asset {
  id
  assetNum
  description
  status
  statusDate
  serialNumber
  manufacturer { id name }
  location { id code description parent { id code } }
  classification { id path description }
  installDate
  purchasePrice
  replacementCost
  warrantyExpires
  isRunning
  downtimeHours: downtime(unit: HOURS)
  lastWorkOrder: workOrders(first: 1, orderBy: {field: COMPLETED, direction: DESC}) {
    edges { node { id woNum status completedAt } }
  }
}

fragment WorkOrderRow on WorkOrder {
  id
  woNum
  description
  status
  priority
  workType
  reportedBy { id displayName }
  reportedAt
  targetStart
  targetFinish
  estimatedHours: estimate(unit: HOURS)
  asset { id assetNum description location { code } }
  tasks(first: 10) { edges { node { id sequence description status } } }
  labor { craft hours rate }
  materials { item { itemNum description } quantity unitCost }
}
`

const querySmall = `query Assets($site: String!, $first: Int = 20) { assets(site: $site, first: $first) { totalCount edges { node { id assetNum description status priority serialNumber location { code } } } } }`

func benchJudge(b *testing.B, query, operationName string) {
	e := testEndpoint(b, "")
	body, err := json.Marshal(map[string]any{
		"query":         query,
		"operationName": operationName,
		"variables":     map[string]any{"site": "BEDFORD", "status": []string{"WAPPR", "INPRG"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := e.Judge(Request{Method: "POST", ContentType: "application/json", Body: bytes.NewReader(body)}, 0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	r := bytes.NewReader(body)
	for b.Loop() {
		r.Reset(body)
		if _, _, err := e.Judge(Request{Method: "POST", ContentType: "application/json", Body: r, ContentLength: int64(len(body))}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// The same document again and again, with its summary in the cache: what
// a client library sends.
func BenchmarkJudge2KB(b *testing.B)   { benchJudge(b, query2KB, "Dashboard") }
func BenchmarkJudgeSmall(b *testing.B) { benchJudge(b, querySmall, "Assets") } // 200 bytes

// A new document each time (a comment differs): parsed every time.
func BenchmarkJudge2KBUncached(b *testing.B)   { benchJudgeUncached(b, query2KB) }
func BenchmarkJudgeSmallUncached(b *testing.B) { benchJudgeUncached(b, querySmall) }

func benchJudgeUncached(b *testing.B, query string) {
	e := testEndpoint(b, "")
	var bodies [1 << 12][]byte // more than the cache holds, made before timing
	for i := range bodies {
		body, err := json.Marshal(map[string]any{"query": fmt.Sprintf("# %04d\n%s", i, query)})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	var r bytes.Reader
	i := 0
	for b.Loop() {
		body := bodies[i%len(bodies)]
		r.Reset(body)
		i++
		if _, _, err := e.Judge(Request{Method: "POST", ContentType: "application/json", Body: &r, ContentLength: int64(len(body))}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// gqlparser alone on the 2 KB document: the floor of the uncached case.
func BenchmarkParseQuery2KB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parser.ParseQuery(&ast.Source{Input: query2KB}); err != nil {
			b.Fatal(err)
		}
	}
}
