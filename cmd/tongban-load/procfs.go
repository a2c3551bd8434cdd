package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ),
// 100 per second on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procStat is what the harness reads from /proc/PID/stat.
type procStat struct {
	PPID int
	// CPU is user plus system time.
	CPU time.Duration
}

// parseStat parses the content of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last closing parenthesis.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("%d fields after the command name", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stime: %w", err)
	}
	return procStat{PPID: ppid, CPU: time.Duration(ut+st) * clockTick}, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// parseStatusKiB returns the value in KiB of a "Name:   123 kB" line of
// /proc/PID/status.
func parseStatusKiB(status []byte, name string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// memoryOf returns VmRSS and VmHWM of a process in KiB.
func memoryOf(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	if rss, err = parseStatusKiB(b, "VmRSS"); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if hwm, err = parseStatusKiB(b, "VmHWM"); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return rss, hwm, nil
}

// childrenOf returns the PIDs of the live children of pid, found through
// the parent PID field of every /proc/*/stat.
func childrenOf(pid int) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		s, err := readStat(child)
		if err != nil {
			continue // gone meanwhile
		}
		if s.PPID == pid {
			out = append(out, child)
		}
	}
	return out, nil
}

// connectorName names a plugin process by its connector name
// ($TONGBAN_CONNECTOR_NAME in its environment) and its command line.
func connectorName(pid int) string {
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	name := filepath.Base(args[0]) + " " + strings.Join(args[1:], " ")
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err == nil {
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "TONGBAN_CONNECTOR_NAME="); ok {
				return fmt.Sprintf("plugin %s (%s)", v, name)
			}
		}
	}
	return "plugin (" + name + ")"
}

// cpuOf returns the CPU time used so far by the given processes together;
// processes that are gone count as zero.
func cpuOf(pids ...int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		if s, err := readStat(p); err == nil {
			sum += s.CPU
		}
	}
	return sum
}

// machine describes this machine from /proc and the Go runtime.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), CPUModel: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// cpuTimes are the machine-wide CPU counters of the first line of
// /proc/stat, in clock ticks.
type cpuTimes struct {
	Busy, Total uint64
}

// parseProcStat parses the aggregate "cpu" line of /proc/stat: busy is
// every counter but idle and iowait.
func parseProcStat(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("first line of /proc/stat is %q", line)
	}
	var t cpuTimes
	// Fields after "cpu": user nice system idle iowait irq softirq steal
	// guest guest_nice; guest time is already counted in user.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		t.Total += n
		if i != 3 && i != 4 {
			t.Busy += n
		}
	}
	return t, nil
}

func machineCPU() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	t, err := parseProcStat(b)
	if err != nil {
		return cpuTimes{}
	}
	return t
}

// busyCores returns how many CPUs of the machine were busy on average
// between a and b.
func busyCores(a, b cpuTimes, cpus int) float64 {
	if b.Total <= a.Total {
		return 0
	}
	return float64(b.Busy-a.Busy) / float64(b.Total-a.Total) * float64(cpus)
}
