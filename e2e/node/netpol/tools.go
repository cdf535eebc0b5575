//go:build tools

// Package tools pins the network-policy enforcer of the node: kube-router's firewall
// (NetworkPolicy) controller, built from the Go module proxy by e2e/node/build.sh.
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
