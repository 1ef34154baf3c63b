package erofs

import (
	"fmt"
	"testing"
)

// TestXattrCounts: only pairs used more than once are shared, told apart by
// tag, name and value alike.
func TestXattrCounts(t *testing.T) {
	type pair struct {
		tag   uint8
		name  string
		value string
	}
	uses := []pair{
		{0, "user.a", "1"}, {0, "user.a", "1"}, {0, "user.a", "2"},
		{1, "a", "1"}, {2, "a", "1"}, {2, "a", "1"}, {2, "a", "1"},
		{0, "user.b", ""}, {0, "user.b", ""}, {0, "user.b", "\x00"},
		{0, "user.a\x001", ""}, // the bytes of ("user.a", "1") with another split
	}
	for i := range 1000 {
		uses = append(uses, pair{0, "trusted.overlay.redirect", fmt.Sprintf("/%d", i)})
	}
	c := newXattrCounts()
	for _, u := range uses {
		c.note(u.tag, u.name, []byte(u.value))
	}
	c.seal()
	for _, u := range uses {
		c.count(u.tag, u.name, []byte(u.value))
	}
	want := map[pair]int{{0, "user.a", "1"}: 2, {2, "a", "1"}: 3, {0, "user.b", ""}: 2}
	got := map[pair]int{}
	for _, u := range c.shared() {
		got[pair{u.tag, u.name, string(u.value)}] = u.count
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("shared %v, want %v", got, want)
	}
	for _, u := range uses {
		_, isShared := want[u]
		if found := c.lookup(u.tag, u.name, []byte(u.value)) != nil; found != isShared {
			t.Errorf("lookup %q: shared %v, want %v", u, found, isShared)
		}
	}
}
