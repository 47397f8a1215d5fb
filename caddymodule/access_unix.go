//go:build unix

package caddymodule

import "golang.org/x/sys/unix"

// unixAccessW asks the kernel whether this process may write in dir,
// taking the effective user, groups, ACLs and read-only mounts into account.
func unixAccessW(dir string) error { return unix.Access(dir, unix.W_OK) }
