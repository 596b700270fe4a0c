package loader

import (
	"sync"
	"testing"

	"github.com/fdtrace/fdtrace/internal/bpfobj"
)

func TestAWalkOfTheFDsMapYieldsEveryKeyOnceWhileTheMapChanges(t *testing.T) {
	// No process has this name: the map holds only what the test puts in.
	tr := load(t, Config{Comm: "fdwalk-nobody"})
	// Above pid_max: no process has these ids.
	const base, procs, perProc = 1 << 24, 20, 2000
	key := func(i int) bpfobj.FdtraceFdKey {
		return bpfobj.FdtraceFdKey{Tgid: uint32(base + i/perProc), Fd: int32(i % perProc)}
	}
	// A gen of user space's: a live record.
	info := bpfobj.FdtraceFdInfo{StackId: 1, Syscall: 3, FdType: 1, Gen: 1 << 63}
	for i := range procs * perProc {
		if err := tr.objs.Fds.Put(key(i), info); err != nil {
			t.Fatal(err)
		}
	}
	// The odd keys are closed and reopened all along; the even ones stay.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for i := 1; i < procs*perProc; i += 2 {
				select {
				case <-stop:
					return
				default:
				}
				tr.objs.Fds.Delete(key(i))
				tr.objs.Fds.Put(key(i), info)
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for walk := range 20 {
		seen := map[[2]int]int{}
		err := tr.EachFD(func(fd FD) {
			if fd.PID >= base {
				seen[[2]int{fd.PID, fd.FD}]++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range seen {
			if n > 1 {
				t.Fatalf("walk %d: pid %d fd %d came %d times", walk, k[0], k[1], n)
			}
		}
		for i := 0; i < procs*perProc; i += 2 {
			if k := key(i); seen[[2]int{int(k.Tgid), int(k.Fd)}] != 1 {
				t.Fatalf("walk %d: pid %d fd %d, never closed, was not seen", walk, k.Tgid, k.Fd)
			}
		}
	}
}
