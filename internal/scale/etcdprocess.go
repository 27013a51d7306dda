package scale

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
)

// ServeEtcd runs a one-member etcd with its data under dir for
// Options.EtcdCommand: it writes the member's client endpoints on the
// first line of stdout (comma-separated) and serves until stdin closes
// (the harness is done, or died).
func ServeEtcd(dir string, stdin io.Reader, stdout io.Writer) error {
	c, err := embedded.Start(dir, 1)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintln(stdout, strings.Join(c.Endpoints(), ",")); err != nil {
		return fmt.Errorf("serve etcd: write the endpoints: %w", err)
	}
	_, err = io.Copy(io.Discard, stdin)
	return err
}

// etcdProcess is the etcd server run as a child process (Options.EtcdCommand).
type etcdProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error // the process's exit
}

// startEtcdProcess runs command with dir as its last argument and reads
// the endpoints it serves on.
func startEtcdProcess(command []string, dir string) (*etcdProcess, []string, error) {
	cmd := exec.Command(command[0], append(command[1:], dir)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the etcd server %q: %w", command, err)
	}
	p := &etcdProcess{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { p.done <- cmd.Wait() }() // after the read: Wait closes stdout
	if err != nil || strings.TrimSpace(line) == "" {
		p.stop()
		return nil, nil, fmt.Errorf("etcd server %q printed no endpoints (%q): %v", command, line, err)
	}
	return p, strings.Split(strings.TrimSpace(line), ","), nil
}

// stop closes the server's stdin and waits for it to exit (killing it
// after 10 s).
func (p *etcdProcess) stop() error {
	p.stdin.Close()
	select {
	case err := <-p.done:
		return err
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		return errors.Join(errors.New("etcd server did not stop within 10s: killed"), <-p.done)
	}
}

// cpu is the CPU time the server process has used so far (user and
// system, from /proc; 0 when unreadable).
func (p *etcdProcess) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name in parentheses, which may hold spaces:
	// utime and stime are the 14th and 15th fields of the line, in ticks.
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	u, errU := strconv.ParseInt(f[11], 10, 64)
	s, errS := strconv.ParseInt(f[12], 10, 64)
	if errU != nil || errS != nil {
		return 0
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(u+s) * time.Second / ticksPerSecond
}
