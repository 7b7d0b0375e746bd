package agent

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// MachineMemory returns the machine's total memory in bytes (8 GiB when it
// cannot be read).
func MachineMemory() int64 {
	if v := meminfo("MemTotal:"); v > 0 {
		return v
	}
	return 8 << 30
}

func memUsed() int64 {
	total, avail := meminfo("MemTotal:"), meminfo("MemAvailable:")
	if total == 0 || avail == 0 {
		return 0
	}
	return total - avail
}

func meminfo(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, key) {
			fields := strings.Fields(line[len(key):])
			if len(fields) == 0 {
				return 0
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(fields[0], 64)
	return v
}
