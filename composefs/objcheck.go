package composefs

import (
	"fmt"

	"github.com/composefs/composefs-go/erofs"
)

// ObjectCount is what CheckObjects found: of the objects the image's
// external files name, how many it looked for in the store and how many of
// those are missing.
type ObjectCount struct {
	// Objects is how many distinct objects external files name.
	Objects int
	// Checked is how many of them were looked for: all, or a sample.
	Checked int
	// Missing is how many of those checked the store lacks (all of them
	// when there is no store).
	Missing int
}

// Sampled tells whether only some of the objects were checked.
func (c ObjectCount) Sampled() bool { return c.Checked < c.Objects }

// CheckObjects looks in the store for the objects of the image's external
// files: every one when there are at most limit of them (or limit is 0 or
// less), else limit of them spread evenly over the image's order. Each
// check is one lookup (objects.Store.Has), without opening or verifying
// the object; a lookup that fails counts as missing, since the open would
// fail too. Without a store every object is missing and none is looked
// for. Walking the image costs a decode of each inode, in memory.
func (f *FS) CheckObjects(limit int) (ObjectCount, error) {
	payloads, err := f.objectPayloads()
	if err != nil {
		return ObjectCount{}, err
	}
	c := ObjectCount{Objects: len(payloads)}
	if f.cfg.Store == nil {
		c.Checked, c.Missing = c.Objects, c.Objects
		return c, nil
	}
	check := payloads
	if limit > 0 && len(payloads) > limit {
		check = make([]string, limit)
		for i := range check {
			check[i] = payloads[i*len(payloads)/limit]
		}
	}
	c.Checked = len(check)
	for _, p := range check {
		if ok, err := f.cfg.Store.Has(p); !ok || err != nil {
			c.Missing++
		}
	}
	return c, nil
}

// objectPayloads lists the distinct payloads of the image's external
// files, in the order a depth-first walk meets them. Files marked as
// external without naming an object are left out: they fail for want of a
// name, not of an object.
func (f *FS) objectPayloads() ([]string, error) {
	var payloads []string
	seen := map[string]bool{}
	visited := map[uint64]bool{}
	root, err := f.img.Inode(f.rootNid)
	if err != nil {
		return nil, fmt.Errorf("root inode: %w", err)
	}
	// Directories to list, depth-first; visited keeps a damaged image's
	// cycles and hardlinked files from being walked twice.
	stack := []erofs.Inode{root}
	visited[root.Nid] = true
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		err := f.img.ReadDir(&dir, func(name string, nid uint64, ftype uint8) error {
			if (ftype != erofs.FTDir && ftype != erofs.FTReg) || visited[nid] {
				return nil
			}
			visited[nid] = true
			in, err := f.img.Inode(nid)
			if err != nil {
				return fmt.Errorf("%q in directory %d: %w", name, dir.Nid, err)
			}
			if in.IsDir() {
				stack = append(stack, in)
				return nil
			}
			if ext, err := f.External(&in); err != nil || !ext {
				return err
			}
			payload, ok, err := f.img.Redirect(&in)
			if err != nil || !ok || seen[payload] {
				return err
			}
			seen[payload] = true
			payloads = append(payloads, payload)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("directory %d: %w", dir.Nid, err)
		}
	}
	return payloads, nil
}
