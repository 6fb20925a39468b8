//go:build pprof

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// A binary built with `-tags pprof` serves net/http/pprof on a loopback port
// of its own, chosen by the kernel, and announces it on standard error as a
// JSON line whose "pprof" field is the base URL. The whole-process benchmark
// (bench/process_test.go) builds it so to take a CPU profile of `sdevents
// run` under load. Release builds (`make build`, the Dockerfile) leave this
// file out: they serve no profiling endpoint.
func init() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, `{"level":"error","error":%q,"message":"pprof: listen"}`+"\n", err.Error())
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	fmt.Fprintf(os.Stderr, `{"level":"info","pprof":"http://%s/debug/pprof/","message":"pprof listening"}`+"\n", ln.Addr())
	go func() { _ = http.Serve(ln, mux) }()
}
