// Package mountinfo reads /proc/self/mountinfo: what is mounted where, for
// composefs-fuse (refusing to stack a mount) and for the tests.
package mountinfo

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TypeAt is the type of the file system mounted on dir, as
// /proc/self/mountinfo tells it ("fuse.composefs-fuse"), or "" when dir is
// no mountpoint. Of mounts stacked on dir, the last is the one seen.
func TypeAt(dir string) string {
	types := typesAt(dir)
	if len(types) == 0 {
		return ""
	}
	return types[len(types)-1]
}

// CountAt is how many mounts are stacked on dir.
func CountAt(dir string) int { return len(typesAt(dir)) }

// typesAt lists the types of the mounts on dir (symlinks in it resolved),
// in mountinfo's order, the one on top last.
func typesAt(dir string) []string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var types []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeOctal(fields[4]) != dir {
			continue
		}
		for i, fl := range fields[5:] {
			if fl == "-" && 5+i+1 < len(fields) {
				types = append(types, fields[5+i+1])
				break
			}
		}
	}
	return types
}

// unescapeOctal undoes the kernel's escaping of space, tab, newline and
// backslash in mountinfo paths (\040 and so on).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
