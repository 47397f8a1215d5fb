package caddymodule

import "golang.org/x/sys/unix"

func unixAccessW(dir string) error { return unix.Access(dir, unix.W_OK) }
