// Command backend is the stand-in upstream of the benchmark: it answers
// every request on a loopback address with a small, fixed JSON body
// (Maximo-shaped, 170 bytes), as fast as net/http allows.
//
//	go run ./bench/backend -addr 127.0.0.1:9080
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

const body = `{"member":[{"href":"http://127.0.0.1/maximo/oslc/os/mxasset/_QkVERk9SRC8xMDAx","assetnum":"11430","siteid":"BEDFORD","status":"OPERATING"}],"responseInfo":{"totalCount":1}}` + "\n"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The actual address, for callers that asked for port 0.
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	b := []byte(body)
	// Shared, read-only header values: no allocation per request.
	contentType, length := []string{"application/json"}, []string{strconv.Itoa(len(b))}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = contentType
			h["Content-Length"] = length
			w.Write(b)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Fatal(srv.Serve(ln))
}
