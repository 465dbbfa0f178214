package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted (need a cgroup2 mount, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified)")

// FindCgroup2 returns the mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo: the
// first cgroup2 mount, which is /sys/fs/cgroup on a unified host and /sys/fs/cgroup/unified on a
// hybrid one.
func FindCgroup2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo finds the first cgroup2 mount point in a mountinfo(5) listing.
func parseMountinfo(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(pre)
		after := strings.Fields(post)
		if len(fs) < 5 || len(after) < 1 || after[0] != "cgroup2" {
			continue
		}
		return unescapeMount(fs[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroup is one cgroup v2 directory.
type cgroup string

func (c cgroup) path(file string) string { return filepath.Join(string(c), file) }

func (c cgroup) write(file, value string) error {
	// cgroupfs files take one write per value; O_TRUNC is refused on some of them.
	f, err := os.OpenFile(c.path(file), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", value, c.path(file), werr)
	}
	return cerr
}

func (c cgroup) read(file string) (string, error) {
	b, err := os.ReadFile(c.path(file))
	return strings.TrimSpace(string(b)), err
}

// events reads cgroup.events ("populated 0|1", "frozen 0|1").
func (c cgroup) events() (populated, frozen bool, err error) {
	b, err := os.ReadFile(c.path("cgroup.events"))
	if err != nil {
		return false, false, err
	}
	for line := range bytes.Lines(b) {
		k, v, _ := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		switch string(k) {
		case "populated":
			populated = string(v) == "1"
		case "frozen":
			frozen = string(v) == "1"
		}
	}
	return populated, frozen, nil
}

// pids lists the processes in the cgroup.
func (c cgroup) pids() ([]int, error) {
	s, err := c.read("cgroup.procs")
	if err != nil {
		return nil, err
	}
	var out []int
	for f := range strings.FieldsSeq(s) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// id is the cgroup id the kernel reports for the cgroup (bpf_get_current_cgroup_id, the cgroup
// filters of eBPF programs): the inode number of its directory on cgroup v2.
func (c cgroup) id() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(string(c), &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", c, err)
	}
	return st.Ino, nil
}

// waitFor polls cgroup.events until cond holds or ctx ends. The kernel signals changes of the
// file with poll/inotify; a short poll loop is enough for the rare state changes waited on here.
func (c cgroup) waitFor(ctx context.Context, what string, cond func(populated, frozen bool) bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		populated, frozen, err := c.events()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && what == "empty" {
				return nil
			}
			return fmt.Errorf("cgroup %s: %w", c, err)
		}
		if cond(populated, frozen) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s not %s: %w", c, what, ctx.Err())
		case <-t.C:
		}
	}
}

// destroy kills every process in the cgroup (cgroup.kill, Linux 5.14+), falling back to SIGKILL per
// listed process on older kernels, waits until it is empty and removes it. A cgroup already gone
// is not an error.
func (c cgroup) destroy(ctx context.Context) error {
	if _, err := os.Stat(string(c)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// A frozen cgroup still dies on SIGKILL, but thawing first lets the kernel finish quickly.
	_ = c.write("cgroup.freeze", "0")
	if err := c.write("cgroup.kill", "1"); err != nil {
		pids, perr := c.pids()
		if perr != nil && !errors.Is(perr, os.ErrNotExist) {
			return fmt.Errorf("kill cgroup %s: %w (and listing it: %v)", c, err, perr)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if err := c.waitFor(ctx, "empty", func(populated, _ bool) bool { return !populated }); err != nil {
		return err
	}
	for {
		err := syscall.Rmdir(string(c))
		switch {
		case err == nil, errors.Is(err, syscall.ENOENT):
			return nil
		case errors.Is(err, syscall.EBUSY):
			// "populated 0" is published a moment before the last task is fully released.
			select {
			case <-ctx.Done():
				return fmt.Errorf("remove cgroup %s: %w", c, err)
			case <-time.After(5 * time.Millisecond):
			}
		default:
			return fmt.Errorf("remove cgroup %s: %w", c, err)
		}
	}
}
