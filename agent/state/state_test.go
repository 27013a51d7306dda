package state

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fleetops/reconciler/agent/driver"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.UpdateApp("web", func(a *App) {
		a.Active, a.Previous = "2", "1"
		a.AddInstalled("2")
		a.AddInstalled("1")
		a.AddInstalled("2")
		a.Running = &driver.Running{App: "web", Version: "2", PIDs: []int{42}, Data: json.RawMessage(`{"x":1}`)}
		a.Step = &Step{Op: StepSwitch, From: "1", To: "2"}
	})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := again.App("web")
	if a.Active != "2" || a.Previous != "1" || len(a.Installed) != 2 || a.Installed[0] != "1" ||
		a.Running.PIDs[0] != 42 || string(a.Running.Data) != `{"x":1}` || a.Step.To != "2" {
		t.Fatalf("reopened state: %+v", a)
	}
}

func TestCopiesAreIndependent(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateApp("web", func(a *App) { a.Installed = []string{"1"} }); err != nil {
		t.Fatal(err)
	}
	a := s.App("web")
	a.Installed[0] = "changed"
	if s.App("web").Installed[0] != "1" {
		t.Fatal("a copy shares memory with the store")
	}
}

func TestFailedWriteKeepsState(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateApp("web", func(a *App) { a.Active = "1" }); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only directories")
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	if err := s.UpdateApp("web", func(a *App) { a.Active = "2" }); err == nil {
		t.Fatal("write into a read-only directory succeeded")
	}
	if s.App("web").Active != "1" {
		t.Fatal("a failed write changed the state in memory")
	}
}

func TestNoTempFilesLeft(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.UpdateApp("web", func(a *App) { a.Active = string(rune('0' + i)) }); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != FileName {
		t.Fatalf("state dir holds %v, want only %s", entries, FileName)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("corrupt state opened without error")
	}
}
