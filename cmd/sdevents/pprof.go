//go:build pprof

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
)

// pprofAddrEnv names the loopback host:port on which a binary built with
// `-tags pprof` serves net/http/pprof. The whole-process benchmark
// (bench/process_test.go) builds the binary so to take a CPU profile of
// `sdevents run` under load. Release builds (`make build`, the Dockerfile)
// leave this file out: they serve no profiling endpoint and ignore the
// variable, which is not a configuration key.
const pprofAddrEnv = "PPROF_ADDR"

// init starts the pprof listener when PPROF_ADDR is set, before any command
// runs. An address that is not loopback, or that cannot be listened on, ends
// the process with status 2: whoever asked for a profile learns at once.
func init() {
	addr := os.Getenv(pprofAddrEnv)
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if err == nil {
		var ip netip.Addr
		if ip, err = netip.ParseAddr(host); err == nil && !ip.IsLoopback() {
			err = fmt.Errorf("%s is not a loopback address", host)
		}
	}
	var ln net.Listener
	if err == nil {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdevents: %s=%s: %v\n", pprofAddrEnv, addr, err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(ln, mux) }()
}
