package composefs

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/composefs/composefs-go/erofs"
)

// ObjectCount is what CheckObjects found: of the objects the image's
// external files name, how many it looked for in the store (all of them,
// or the first ones of the image's order) and how many of those are
// missing.
type ObjectCount struct {
	// Checked is how many distinct objects were looked for.
	Checked int
	// Missing is how many of those the store lacks (all of them when
	// there is no store).
	Missing int
	// All: every external file's object was looked for.
	All bool
}

// Sampled tells whether only some of the objects were checked.
func (c ObjectCount) Sampled() bool { return !c.All }

// CheckObjects looks in the store for the objects of the image's external
// files, walking the image depth-first: all of them when limit is 0 or
// less, else only the first limit distinct ones, met within the first
// max(4×limit, 1024) inodes, which bounds the cost on a large image (the walk decodes
// each inode it meets, in memory; a check
// is one lookup, objects.Store.Has, without opening or verifying the
// object). A lookup that fails ends the count with its error: the
// object is not known to be missing (a server that is down). Without a
// store every object is missing and none is looked for.
func (f *FS) CheckObjects(limit int) (ObjectCount, error) {
	payloads, all, err := f.objectPayloads(limit)
	if err != nil {
		return ObjectCount{}, err
	}
	c := ObjectCount{Checked: len(payloads), All: all}
	if f.cfg.Store == nil {
		c.Missing = c.Checked
		return c, nil
	}
	for _, p := range payloads {
		ok, err := f.cfg.Store.Has(p)
		if err != nil {
			// Not missing: not known (a server that is down).
			return c, fmt.Errorf("object %s: %w", p, err)
		}
		if !ok {
			c.Missing++
		}
	}
	return c, nil
}

// objectPayloads lists the distinct payloads of the image's external
// files, in the order a depth-first walk meets them, stopping at limit of
// them or max(4×limit, 1024) inodes (if limit is above 0); all says the walk went
// through. Files marked as
// external without naming an object are left out: they fail for want of a
// name, not of an object.
func (f *FS) objectPayloads(limit int) (payloads []string, all bool, err error) {
	refs, all, err := f.objectRefs(limit)
	for _, r := range refs {
		payloads = append(payloads, r.Payload)
	}
	return payloads, all, err
}

// ObjectRef is an object the image's files name, with their size (the
// first file's, should a damaged image give the object several).
type ObjectRef struct {
	Payload string
	Size    int64
}

// ObjectRefs is ObjectPayloads with each object's size: what a prefetch
// over the network asks for, so that a server cannot send more.
func (f *FS) ObjectRefs() ([]ObjectRef, error) {
	refs, _, err := f.objectRefs(0)
	if err != nil {
		return nil, err
	}
	return refs, nil
}

// objectRefs is objectPayloads' walk, with the sizes.
func (f *FS) objectRefs(limit int) (refs []ObjectRef, all bool, err error) {
	payloads := 0
	seen := map[string]bool{}
	visited := map[uint64]bool{}
	root, err := f.img.Inode(f.rootNid)
	if err != nil {
		return nil, false, fmt.Errorf("root inode: %w", err)
	}
	// Directories to list, depth-first; visited keeps a damaged image's
	// cycles and hardlinked files from being walked twice.
	stack := []erofs.Inode{root}
	visited[root.Nid] = true
	for len(stack) > 0 {
		if limit > 0 && payloads >= limit {
			return refs, false, nil
		}
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		err := f.img.ReadDir(&dir, func(name string, nid uint64, ftype uint8) error {
			if (ftype != erofs.FTDir && ftype != erofs.FTReg) || visited[nid] {
				return nil
			}
			visited[nid] = true
			if limit > 0 && len(visited) > max(4*limit, 1024) {
				return errEnough
			}
			in, err := f.img.Inode(nid)
			if err != nil {
				return fmt.Errorf("%q in directory %d: %w", name, dir.Nid, err)
			}
			if in.IsDir() {
				stack = append(stack, in)
				return nil
			}
			// A file whose metacopy or redirect is damaged fails its
			// own open (EIO); it names no object to look for.
			if ext, err := f.External(&in); err != nil || !ext {
				return nil
			}
			payload, ok, err := f.img.Redirect(&in)
			if err != nil || !ok || seen[payload] {
				return nil
			}
			seen[payload] = true
			size := int64(-1)
			if in.Size <= math.MaxInt64 {
				size = int64(in.Size)
			}
			refs = append(refs, ObjectRef{payload, size})
			payloads++
			if limit > 0 && payloads >= limit {
				return errEnough
			}
			return nil
		})
		if err == errEnough {
			return refs, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("directory %d: %w", dir.Nid, err)
		}
	}
	return refs, true, nil
}

// errEnough stops a walk that has found what it looked for.
var errEnough = errors.New("enough")

// ObjectPayloads lists every object the image's external files name, as
// payloads ("xx/rest", each once), in the order a depth-first walk meets
// them: what a prefetch of the whole image fetches. An image the walk
// cannot go through is an error, so that a caller deciding what to keep
// (a garbage collection) never works from part of the list.
func (f *FS) ObjectPayloads() ([]string, error) {
	payloads, _, err := f.objectPayloads(0)
	if err != nil {
		return nil, err
	}
	return payloads, nil
}

// ImageObjects lists the objects the image open as image names
// (ObjectPayloads), for objects.Repository's GC and Fsck
// (objects.ImageObjectsFunc).
func ImageObjects(image *os.File) ([]string, error) {
	f, err := OpenFile(image, Config{})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ObjectPayloads()
}
