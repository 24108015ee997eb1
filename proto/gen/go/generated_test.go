// Package gen_test checks that the committed generated code matches the
// .proto files: regenerate with `make proto` when it fails.
package gen_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	buf, err := exec.LookPath("buf")
	if err != nil {
		t.Fatalf("buf not on PATH (make test installs it into .tools/bin): %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command(buf, "generate", "--output", out)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, b)
	}
	fresh := filepath.Join(out, "gen", "go", "churnwatch")
	committed := "churnwatch"
	seen := map[string]bool{}
	err = filepath.WalkDir(fresh, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(fresh, p)
		seen[rel] = true
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(committed, rel))
		if err != nil {
			t.Errorf("%s: generated but not committed; run make proto", rel)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: stale; run make proto", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(committed, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(committed, p)
			if !seen[rel] {
				t.Errorf("%s: committed but no longer generated", rel)
			}
		}
		return nil
	})
}

// TestDescriptorSetIsCurrent checks the committed descriptor set (with
// source info) against a fresh buf build, and that proto/churnwatch.binpb
// is that file.
func TestDescriptorSetIsCurrent(t *testing.T) {
	buf, err := exec.LookPath("buf")
	if err != nil {
		t.Fatalf("buf not on PATH (make test installs it into .tools/bin): %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "churnwatch.binpb")
	cmd := exec.Command(buf, "build", "--as-file-descriptor-set", "-o", fresh)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf build: %v\n%s", err, b)
	}
	want, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"descriptorset/churnwatch.binpb", "../../churnwatch.binpb"} {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v; run make proto", p, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: stale; run make proto", p)
		}
	}
}
