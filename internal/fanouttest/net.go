package fanouttest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FreePort is a port of 127.0.0.1 that nothing listened on a moment ago (listened on, then
// closed): for a server whose address a test must write in a config before it starts. It
// is taken below Linux's ephemeral range (32768 and up), where the kernel never puts the
// local end of an outgoing connection: a port the kernel handed out for port 0 could be
// taken by another test's client before the server it was meant for binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port of 127.0.0.1 between 20000 and 32000")
	return 0
}

// FreeAddr is FreePort as an address, 127.0.0.1:PORT.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// Listening reports, each time it is called, whether something accepts TCP connections on
// addr: a condition for WaitFor.
func Listening(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// Client is the HTTP client of the kit's requests: bounded, and with enough idle
// connections per host for a load of callbacks from many goroutines.
var Client = &http.Client{
	Timeout:   WaitTimeout,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
}

// Do makes one request with Client, with a bearer token when token is set and a JSON body
// when body is not nil, and returns the status and the answer. A request that got no
// answer returns status 0 and the error's text as the answer, so that callers in a load
// loop can count it and carry on.
func Do(method, url, token string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := Client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return resp.StatusCode, answer
}
