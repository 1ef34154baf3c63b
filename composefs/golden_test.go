package composefs

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/golden"
)

// TestGoldenView walks the view of every golden image (C and composefs-rs)
// against its dump, as stored: the view lists every stored entry but the
// root's whiteouts, with the stored type, permissions, owner, size and
// symlink target; no object is read (the store is empty), and
// fstest-style consistency of listings and Stat holds.
func TestGoldenView(t *testing.T) {
	for _, path := range append(golden.CImages(t), golden.V2Images(t)...) {
		name := path[strings.LastIndexByte(path, '/')+1:]
		t.Run(name, func(t *testing.T) {
			im, err := erofs.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			stored := map[string]*dumpfile.Entry{}
			err = im.Walk(func(e *dumpfile.Entry) error {
				c := *e
				stored[strings.TrimPrefix(e.Path, "/")] = &c
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			v, err := New(im, Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			seen := 0
			err = fs.WalkDir(v, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				seen++
				key := p
				if p == "." {
					key = ""
				}
				e := stored[key]
				if e == nil {
					t.Errorf("%s: listed, not stored", p)
					return nil
				}
				delete(stored, key)
				info, err := d.Info()
				if errors.Is(err, fs.ErrNotExist) && e.Mode&erofs.ModeFmt == erofs.ModeChr && e.Rdev == 0 {
					return nil // a whiteout: listed, not found
				}
				if errors.Is(err, ErrNoData) || errors.Is(err, ErrInvalidRedirect) {
					return nil // overlayfs refuses it too (EIO, EINVAL)
				}
				if err != nil {
					t.Errorf("%s: %v", p, err)
					return nil
				}
				a := info.Sys().(*Attr)
				if e.Mode&erofs.ModeFmt == erofs.ModeChr && e.Rdev == 0 && a.Mode == erofs.ModeReg|e.Mode&0o7777 && a.Size == 0 {
					// A user's whiteout, which V0/V1 store escaped as an
					// empty file and the dump shows unescaped: the mount
					// shows the file.
					return nil
				}
				if a.Mode != e.Mode || a.UID != e.UID || a.GID != e.GID || a.Nlink != e.Nlink && e.Mode&erofs.ModeFmt != erofs.ModeDir {
					t.Errorf("%s: mode %o uid %d gid %d nlink %d, stored %o %d %d %d", p, a.Mode, a.UID, a.GID, a.Nlink, e.Mode, e.UID, e.GID, e.Nlink)
				}
				if e.Mode&erofs.ModeFmt == erofs.ModeReg && a.Size != e.Size {
					t.Errorf("%s: size %d, stored %d", p, a.Size, e.Size)
				}
				if d.Type()&fs.ModeSymlink != 0 {
					if target, err := v.ReadLink(p); err != nil || target != e.Payload {
						t.Errorf("%s: target %q %v, stored %q", p, target, err, e.Payload)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for p, e := range stored {
				// Only the root's whiteouts (and names io/fs cannot
				// spell) are left out.
				if strings.Contains(p, "/") || e.Mode&erofs.ModeFmt != erofs.ModeChr || e.Rdev != 0 {
					t.Errorf("%s: stored, not listed", p)
				}
			}
			t.Logf("%d paths", seen)
		})
	}
}
