// Command packaging builds keygate's Debian package with nfpm:
//
//	cd packaging && go run . [-o dir] [-arch amd64|arm64] [-version 1.2.3]
//
// It cross-builds the keygate binary for linux/<arch> from the parent
// module, stamping the version into it (`keygate version` prints it), and
// packages it with the systemd unit, the configuration and the maintainer
// scripts described in nfpm.yaml. It is a module of its own so that the
// keygate module does not depend on nfpm.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	out := flag.String("o", "dist", "directory the .deb is written to")
	arch := flag.String("arch", runtime.GOARCH, "target architecture (GOARCH)")
	version := flag.String("version", "", "package version, semver (default: 0.0.0-dev+git<commit>)")
	flag.Parse()
	if err := run(*out, *arch, *version); err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func run(out, arch, version string) error {
	if version == "" {
		version = devVersion()
	}
	version = strings.TrimPrefix(version, "v")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "keygate-packaging")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	bin := filepath.Join(work, "keygate")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v"+version, "-o", bin, "./cmd/keygate")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building keygate for linux/%s: %w", arch, err)
	}

	vars := map[string]string{"ARCH": arch, "VERSION": version, "BINARY": bin}
	cfg, err := nfpm.ParseFileWithEnvMapping("nfpm.yaml", func(k string) string { return vars[k] })
	if err != nil {
		return fmt.Errorf("reading nfpm.yaml: %w", err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	info = nfpm.WithDefaults(info)
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	target := filepath.Join(out, pkg.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return err
	}
	info.Target = target
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return fmt.Errorf("packaging: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(target)
	return nil
}

// devVersion names an unreleased build after its commit.
func devVersion() string {
	rev, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "0.0.0-dev"
	}
	return "0.0.0-dev+git" + strings.TrimSpace(string(rev))
}
