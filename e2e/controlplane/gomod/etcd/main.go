// Command etcd runs the etcd server from the go.etcd.io/etcd/server/v3 module.
// `go install go.etcd.io/etcd/server/v3@...` fails on that module's replace
// lines, so we wrap its main package in our own module instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
