package main

import (
	"net"
	"strings"
	"testing"
)

func TestReadyLineFromJSON(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   []string
		never  string
	}{
		{
			name:   "demo shape",
			config: `{"admin":{"listen":"localhost:2019"},"apps":{"http":{"servers":{"srv0":{"listen":[":8080"]},"srv1":{"listen":["127.0.0.1:9080"]}}},"apikey":{"storage":{"type":"file","path":"/tmp/d/keys.db"}}}}`,
			want:   []string{"sites http://localhost:8080 (all interfaces), http://127.0.0.1:9080;", "admin localhost:2019;", "store file /tmp/d/keys.db"},
		},
		{
			name:   "postgres never shows the DSN",
			config: `{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":[":443"]}}},"apikey":{"storage":{"type":"postgres","dsn":"postgres://u:hunter2@db/k"}}}}`,
			want:   []string{"https://localhost:443", "admin off;", "store postgres"},
			never:  "hunter2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planFromJSON([]byte(tt.config))
			if p == nil {
				t.Fatal("no plan")
			}
			line := p.readyLine()
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("got %q, want it to contain %q", line, w)
				}
			}
			if tt.never != "" && strings.Contains(line, tt.never) {
				t.Errorf("got %q, which contains %q", line, tt.never)
			}
		})
	}
}

func TestCheckPortsRefusesServedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := &startPlan{sites: []siteAddr{{listen: l.Addr().String()}}}
	if err := p.checkPorts(); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Fatalf("got %v, want an already-served error", err)
	}
	l.Close()
	if err := p.checkPorts(); err != nil {
		t.Fatalf("after the listener closed: got %v, want nil", err)
	}
}
