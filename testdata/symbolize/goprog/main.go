// Fixture for internal/symbolize tests: a noinline function and an inlinable
// one, with marker comments on known lines. The tests build it with go build.
package main

import (
	"fmt"
	"os"
)

//go:noinline
func openConfig(dir string) (*os.File, error) { // MARK openConfig
	name := configName(dir) // MARK inline call
	return os.Open(name)    // MARK open call
}

func configName(dir string) string {
	return dir + "/config.json" // MARK inline body
}

func main() {
	f, err := openConfig(os.TempDir())
	if err != nil {
		fmt.Println(err)
		return
	}
	f.Close()
}
