// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 at the version in go.mod.
//
// It is the same three lines as upstream's server/main.go (package main at the root of
// go.etcd.io/etcd/server/v3); a main package of our own gives the binary its name, "etcd".
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
