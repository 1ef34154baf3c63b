package main

import (
	"strings"
	"testing"
)

func TestMirrorIn(t *testing.T) {
	for _, tc := range []struct{ name, sources, want string }{
		{"deb822", "Types: deb\nURIs: http://deb.debian.org/debian-security\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", "http://mirror.example/debian"},
		{"one-line", "# deb http://old.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n", "http://mirror.example/debian"},
		{"security only", "deb http://security.debian.org/debian-security bookworm-security main\n", ""},
		{"deb-src only", "deb-src http://mirror.example/debian bookworm main\n", ""},
	} {
		if got := mirrorIn(strings.NewReader(tc.sources)); got != tc.want {
			t.Errorf("%s: mirrorIn = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1}, 2.5},
		{[]float64{9, 1, 2, 3}, 2.5},
	} {
		if got := median(tc.v); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestRunsFor(t *testing.T) {
	b := &bench{cfg: &config{groupRuns: map[string]int{"tree": 5}}}
	if got := b.runsFor("tree"); got != 5 {
		t.Errorf("--group-runs tree=5: runsFor(tree) = %d", got)
	}
	if got := b.runsFor("gobuild"); got != defaultRuns["gobuild"] {
		t.Errorf("runsFor(gobuild) = %d, want the default %d", got, defaultRuns["gobuild"])
	}
	b.cfg.runs = 1
	if got, got2 := b.runsFor("gobuild"), b.runsFor("tree"); got != 1 || got2 != 5 {
		t.Errorf("--runs 1 --group-runs tree=5: gobuild %d, tree %d; want 1, 5", got, got2)
	}
	for _, g := range rowGroups {
		if _, ok := defaultRuns[g]; !ok {
			t.Errorf("group %s has no default count of runs", g)
		}
	}
}
