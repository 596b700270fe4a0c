package main

import (
	"github.com/spf13/pflag"

	"github.com/fdtrace/fdtrace/internal/loader"
)

// stackModeFlag is --stack-mode, checked as it is parsed.
type stackModeFlag struct{ mode loader.StackMode }

func (f *stackModeFlag) String() string {
	if f.mode == "" {
		return string(loader.StackDWARF)
	}
	return string(f.mode)
}

func (f *stackModeFlag) Set(s string) error {
	m, err := loader.ParseStackMode(s)
	if err != nil {
		return err
	}
	f.mode = m
	return nil
}

func (f *stackModeFlag) Type() string { return "MODE" }

func (f *stackModeFlag) add(fs *pflag.FlagSet) {
	fs.Var(f, "stack-mode", "walk user stacks by `MODE`: dwarf (the files' DWARF unwind tables, frame pointers in JIT code: right without frame pointers) or fp (frame pointers: cheaper, enough for Go and -fno-omit-frame-pointer builds)")
}
