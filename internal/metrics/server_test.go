package metrics

import (
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/netutil"
)

// Clients that connect and say nothing are cut off, and no more of them
// are held at once than the limit: the endpoint outlives them.
func TestIdleClientsAreCutOffAndCappedWhileScrapesGoOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Limits{MaxConns: 4, ReadHeader: 300 * time.Millisecond, Read: time.Second, Write: time.Second, Idle: time.Second}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := Serve(ln, h, l, log.New(io.Discard, "", 0))
	defer srv.Close()

	// Twice the cap of silent clients.
	var idle []net.Conn
	for range 2 * l.MaxConns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// Each is closed by the server within the header timeout of its
	// accept: the second half waits for a slot of the first.
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range idle {
		c.SetReadDeadline(deadline)
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("idle client %d: read %d bytes, %v; want the server to close it", i, n, err)
		}
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("a scrape after the idle clients: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a scrape after the idle clients: status %d", resp.StatusCode)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestALimitListenerHoldsNoMoreThanItsLimit(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := netutil.LimitListener(inner, 2) // what Serve caps connections with
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were held")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("the third connection was not accepted once a slot was free")
	}
	second.Close()
}
