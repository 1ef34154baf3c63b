package objects

import (
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/composefs/composefs-go/internal/storetest"
	"github.com/composefs/composefs-go/verity"
)

// TestRemoteReuse: a Remote with one request slot keeps one copy buffer
// and one hasher between fetches; objects of both algorithms and of sizes
// on either side of the buffer's, fetched in turn, each come out whole,
// and one served with the wrong bytes is still refused after a good one
// left its hasher behind.
func TestRemoteReuse(t *testing.T) {
	dir := t.TempDir()
	store, err := CreateFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	want := map[string][]byte{}
	var order []string
	for i, size := range []int{0, 1, 4095, copyBufferSize, copyBufferSize + 1, 3*copyBufferSize + 17, 70000} {
		alg := []verity.Algorithm{verity.SHA256, verity.SHA512}[i%2]
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		p, _, err := store.Add(alg, tempSource(t, data))
		if err != nil {
			t.Fatal(err)
		}
		want[p] = data
		order = append(order, p)
	}
	store.Close()
	// One object's bytes changed on the server: its fetch must fail.
	bad := order[len(order)-1]
	good := want[bad]
	changed := append([]byte(nil), good...)
	changed[len(changed)/2] ^= 1
	os.Remove(dir + "/" + bad)
	if err := os.WriteFile(dir+"/"+bad, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	nginx := storetest.StartNginx(t, dir)
	r := newRemote(t, nginx.URL, RemoteConfig{Cache: newCache(t, 0), MaxRequests: 1, Attempts: 1})
	for _, p := range order {
		f, err := r.Open(p)
		if p == bad {
			if err == nil {
				f.Close()
				t.Fatalf("%s served with a changed byte: opened", p)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(got) != string(want[p]) {
			t.Fatalf("%s: %d bytes (%v), want the %d stored", p, len(got), err, len(want[p]))
		}
	}
	if st := r.Stats(); st.Fetched != int64(len(order)-1) || st.Failed != 1 {
		t.Errorf("stats %+v, want %d fetched and 1 failed", st, len(order)-1)
	}
}
