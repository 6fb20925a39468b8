// Command sdevents receives Stable Diffusion platform callbacks, records them in
// NATS JetStream and runs the consumers that act on them. One binary, many
// targets: `sdevents run` wires everything into one process around an embedded
// JetStream; `sdevents ingress` (and the other service targets) run one service
// against an external NATS.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRoot(os.Environ()).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sdevents:", err)
		os.Exit(1)
	}
}
