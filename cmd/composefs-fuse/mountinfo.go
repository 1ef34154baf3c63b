package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountedType is the type of the file system mounted on dir, as
// /proc/self/mountinfo tells it ("fuse.composefs-fuse"), or "" when dir is
// no mountpoint. Of mounts stacked on dir, the last is the one seen.
func mountedType(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	typ := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeOctal(fields[4]) != dir {
			continue
		}
		for i, fl := range fields[5:] {
			if fl == "-" && 5+i+1 < len(fields) {
				typ = fields[5+i+1]
				break
			}
		}
	}
	return typ
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
