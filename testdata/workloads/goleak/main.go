// goleak leaks known numbers of files and listeners from known functions,
// balances others, says "ready" and waits for stdin to close. Usage:
//
//	goleak FILES LISTENERS
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

var keep []any

//go:noinline
func leakFiles(n int) {
	for range n {
		f, err := os.Open("/etc/hostname")
		if err != nil {
			panic(err)
		}
		keep = append(keep, f)
	}
}

//go:noinline
func leakListeners(n int) {
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		keep = append(keep, l)
	}
}

//go:noinline
func balanced(n int) {
	for range n {
		f, err := os.Open("/etc/hostname")
		if err != nil {
			panic(err)
		}
		f.Close()
	}
}

func main() {
	files, _ := strconv.Atoi(os.Args[1])
	listeners, _ := strconv.Atoi(os.Args[2])
	balanced(50)
	leakFiles(files)
	leakListeners(listeners)
	balanced(50)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
