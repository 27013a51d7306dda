package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorRate: with an error rate of 0.25, exactly one GET / in four
// answers 500, /health stays ok, and /metrics counts the answers by code.
func TestErrorRate(t *testing.T) {
	srv := httptest.NewServer(handlerWith(0.25))
	defer srv.Close()
	codes := map[int]int{}
	for range 40 {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 30 || codes[500] != 10 {
		t.Fatalf("answers by code: %v, want 30 200s and 10 500s", codes)
	}
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 || h.Status != "ok" {
		t.Fatalf("/health: %d %+v %v, want ok while GET / fails", resp.StatusCode, h, err)
	}
	resp.Body.Close()
	body := scrape(t, srv.URL)
	for _, want := range []string{`http_requests_total{code="200"} 30`, `http_requests_total{code="500"} 10`, `workload_info{version="dev"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestNoErrors: without an error rate every answer is 200, and the 500
// series exists from zero (a query of errors finds it).
func TestNoErrors(t *testing.T) {
	srv := httptest.NewServer(handlerWith(errorRate("")))
	defer srv.Close()
	for range 5 {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /: %d", resp.StatusCode)
		}
	}
	body := scrape(t, srv.URL)
	if !strings.Contains(body, `http_requests_total{code="500"} 0`) || !strings.Contains(body, `http_requests_total{code="200"} 5`) {
		t.Fatalf("/metrics:\n%s", body)
	}
	if errorRate("2") != 0 || errorRate("x") != 0 || errorRate("0.5") != 0.5 {
		t.Fatal("errorRate accepts only a fraction in [0, 1]")
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
