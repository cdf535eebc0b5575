//go:build tools

// Package tools pins the node's container runtime: containerd, its runc shim and ctr, built
// from the Go module proxy by e2e/node/build.sh.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
