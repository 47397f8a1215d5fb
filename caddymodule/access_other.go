//go:build !unix

package caddymodule

import "os"

// unixAccessW has no access(2) to ask on these systems (Windows ACLs
// decide, and the read-only attribute of a directory is not enforced for
// creating files in it), so it tries what the store will do: create a file
// in dir, and remove it again.
func unixAccessW(dir string) error {
	f, err := os.CreateTemp(dir, ".keygate-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
