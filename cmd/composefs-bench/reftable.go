package main

import (
	"fmt"
	"io"
)

// refTable is a table of its own, printed after the main one, for rows
// whose reference is not the kernel's mount: a reference way's figure,
// ours, and our ratio to the reference, as the main table's ratios are to
// the kernel's. The OCI rows (umoci the reference) and the HTTP rows (the
// local store the reference) are such tables.
type refTable struct {
	title     string // a line saying what is measured, against what
	ref, ours string // the two columns' heads
	rows      []refRow
}

// refRow is one row of a refTable; 0 is "not measured".
type refRow struct {
	label     string
	unit      string // "s" or "MiB"
	ref, ours float64
	bar       string // the ratio we must stay under, "" for none
}

// printRefTable prints t after an empty line: each row's reference figure,
// ours, our ratio to the reference and the bar. A table without rows
// prints nothing.
func printRefTable(w io.Writer, t refTable) {
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, t.title)
	fmt.Fprintf(w, "%-52s %10s %10s %6s %6s\n", "measurement", t.ref, t.ours, "ratio", "bar")
	for _, r := range t.rows {
		u, v := "-", "-"
		if r.ref > 0 {
			u = fmtVal(r.ref, r.unit)
		}
		if r.ours > 0 {
			v = fmtVal(r.ours, r.unit)
		}
		fmt.Fprintf(w, "%-52s %10s %10s %6s %6s\n", r.label, u, v, ratio(r.ours, r.ref), dash(r.bar))
	}
}
