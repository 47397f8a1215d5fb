package graphql_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keygate/keygate/keystore/graphql"
)

func ExampleEndpoint_Judge() {
	e, err := graphql.NewEndpoint([]string{"/mce/api/graphql"}, map[string][]string{
		"assets":     {"asset", "assets"},
		"workorders": {"workOrder", "workOrders", "createWorkOrder"},
	}, "")
	if err != nil {
		panic(err)
	}
	// operationName picks the query, but the mutation beside it is judged too.
	body := `{"query":"query Q { assets { id } } mutation M { wo: createWorkOrder { id } }","operationName":"Q"}`
	j, forward, err := e.Judge(graphql.Request{
		Method:        "POST",
		ContentType:   "application/json; charset=utf-8",
		Body:          strings.NewReader(body),
		ContentLength: int64(len(body)),
	}, graphql.DefaultMaxBody)
	switch {
	case errors.Is(err, graphql.ErrTooLarge): // 413 request_too_large
	case errors.Is(err, graphql.ErrInvalid): // 400 invalid_request, err.Error() as the message
	case errors.Is(err, graphql.ErrMutationOverGET): // 405 method_not_allowed
	case errors.Is(err, graphql.ErrUnknownField): // 403 forbidden
	case err != nil: // reading the body failed
	}
	fmt.Println(j.Needs, j.Introspection, string(forward) == body)
	// Output: [{assets false} {workorders true}] false true
}
