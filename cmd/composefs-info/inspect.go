package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/errpath"
)

// inspect prints the image's layout for debugging: header, superblock, then
// every inode from start down, as stored (stubs and escapes included, each
// marked). Damage is reported in place and the walk goes on; any damage
// makes the command fail at the end.
func inspect(path, start string, out *bufio.Writer) error {
	im, err := erofs.Open(path)
	if err != nil {
		return fail("%s: %v", path, errpath.Cause(err, path))
	}
	defer im.Close()
	h, sb := im.Header(), im.Superblock()
	fmt.Fprintf(out, "header: magic %#08x version %d flags %#x composefs_version %d\n",
		h.Magic, h.Version, h.Flags, h.ComposefsVersion)
	fmt.Fprintf(out, "superblock: magic %#08x checksum %#08x feature_compat %#x feature_incompat %#x blkszbits %d sb_extslots %d\n",
		sb.Magic, sb.Checksum, sb.FeatureCompat, sb.FeatureIncompat, sb.BlkSzBits, sb.SbExtSlots)
	fmt.Fprintf(out, "superblock: root_nid %d inos %d blocks %d meta_blkaddr %d xattr_blkaddr %d build_time %d.%09d\n",
		sb.RootNid, sb.Inos, sb.Blocks, sb.MetaBlkAddr, sb.XattrBlkAddr, sb.BuildTime, sb.BuildTimeNsec)
	fmt.Fprintf(out, "superblock: uuid %x volume_name %q extra_devices %d xattr_prefix_count %d xattr_prefix_start %d\n",
		sb.UUID, strings.TrimRight(string(sb.VolumeName[:]), "\x00"), sb.ExtraDevices, sb.XattrPrefixCount, sb.XattrPrefixStart)
	fmt.Fprintf(out, "image: %d bytes\n", im.Size())

	ins := &inspector{im: im, out: out, seen: map[uint64]string{}}
	nid, err := ins.resolve(start)
	if err != nil {
		return fail("%s: %s: %v", path, start, err)
	}
	ins.visit(nid, cleanPath(start), 0, nid == im.RootNid())
	if ins.damage > 0 {
		return fail("%s: %d damaged structures (see output)", path, ins.damage)
	}
	return nil
}

func cleanPath(p string) string {
	p = "/" + strings.Trim(p, "/")
	return p
}

type inspector struct {
	im     *erofs.Image
	out    *bufio.Writer
	seen   map[uint64]string // nid → first path
	damage int
}

func (s *inspector) resolve(p string) (uint64, error) {
	nid := s.im.RootNid()
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		in, err := s.im.Inode(nid)
		if err != nil {
			return 0, err
		}
		if nid, _, err = s.im.Lookup(&in, name); err != nil {
			return 0, err
		}
	}
	return nid, nil
}

func (s *inspector) report(path string, err error) {
	s.damage++
	fmt.Fprintf(s.out, "  DAMAGE %s: %v\n", path, err)
}

const maxInspectDepth = 2048

func (s *inspector) visit(nid uint64, path string, depth int, isRoot bool) {
	if first, ok := s.seen[nid]; ok {
		fmt.Fprintf(s.out, "nid %d %s: hardlink to %s\n", nid, path, first)
		return
	}
	s.seen[nid] = path
	im := s.im
	in, err := im.Inode(nid)
	if err != nil {
		fmt.Fprintf(s.out, "nid %d %s\n", nid, path)
		s.report(path, err)
		return
	}
	sb := im.Superblock()
	off := uint64(sb.MetaBlkAddr)*erofs.BlockSize + nid*erofs.InodeSlotSize
	form := "compact"
	if in.Extended {
		form = "extended"
	}
	fmt.Fprintf(s.out, "nid %d %s: %s at %#x, %s, %s, size %d, mode %07o, nlink %d, uid %d, gid %d, mtime %d.%09d, ino %d, xattr_icount %d\n",
		nid, path, form, off, typeName(in.Mode), layoutName(in.Layout), in.Size, in.Mode, in.Nlink, in.UID, in.GID,
		in.MtimeSec, in.MtimeNsec, in.Ino, in.XattrCount)
	s.data(&in, path)
	xs, err := im.Xattrs(&in)
	if err != nil {
		s.report(path, err)
	}
	escapedWhiteout := false
	for _, x := range xs {
		where := "inline"
		if x.Shared {
			where = fmt.Sprintf("shared %d", x.SharedIndex)
		}
		shown := "hidden by the mount"
		if name, ok := composefs.XattrShownName(x.Name); ok {
			shown = "mount shows " + name
		}
		fmt.Fprintf(s.out, "  xattr %s: %s = %q (stored index %#x name %q; %s)\n",
			where, x.Name, x.Value, x.NameIndex, x.StoredName, shown)
		if x.Name == erofs.OverlayEscWhiteout {
			escapedWhiteout = true
		}
	}
	if escapedWhiteout && in.IsRegular() {
		fmt.Fprintf(s.out, "  escaped whiteout: a user's chardev 0/0, shown by the mount as an empty file\n")
	}
	if !in.IsDir() {
		return
	}
	if depth >= maxInspectDepth {
		s.report(path, fmt.Errorf("directories nested deeper than %d", maxInspectDepth))
		return
	}
	type child struct {
		name string
		nid  uint64
	}
	var children []child
	err = im.ReadDir(&in, func(name string, cnid uint64, ftype uint8) error {
		children = append(children, child{name, cnid})
		return nil
	})
	if err != nil {
		s.report(path, err)
	}
	prefix := path
	if prefix != "/" {
		prefix += "/"
	}
	stubs := 0
	for _, c := range children {
		cp := prefix + c.name
		if isRoot && im.Header().ComposefsVersion < erofs.ComposefsVersion2 {
			if cin, err := im.Inode(c.nid); err == nil && erofs.IsWhiteoutStub(c.name, &cin) {
				stubs++
				fmt.Fprintf(s.out, "nid %d %s: whiteout stub (chardev 0/0, hidden by the mount)\n", c.nid, cp)
				s.seen[c.nid] = cp
				continue
			}
		}
		s.visit(c.nid, cp, depth+1, false)
	}
	if stubs > 0 {
		fmt.Fprintf(s.out, "# %s: %d whiteout stubs\n", path, stubs)
	}
}

// data prints where an inode's data lives.
func (s *inspector) data(in *erofs.Inode, path string) {
	im := s.im
	switch {
	case in.Mode&erofs.ModeFmt == erofs.ModeChr || in.Mode&erofs.ModeFmt == erofs.ModeBlk:
		fmt.Fprintf(s.out, "  rdev %d:%d (%#x)\n", (in.Rdev>>8)&0xfff, in.Rdev&0xff|(in.Rdev>>12)&0xfff00, in.Rdev)
		return
	case !in.IsDir() && !in.IsRegular() && !in.IsSymlink():
		return
	}
	switch in.Layout {
	case erofs.LayoutFlatPlain:
		fmt.Fprintf(s.out, "  data: start block %d\n", in.StartBlock)
	case erofs.LayoutFlatInline:
		fmt.Fprintf(s.out, "  data: start block %d, tail inline\n", in.StartBlock)
	case erofs.LayoutChunkBased:
		kind := "block map"
		if in.StartBlock&erofs.ChunkFormatIndexes != 0 {
			kind = "chunk indexes"
		}
		holes, err := im.AllHoles(in)
		if err != nil {
			s.report(path, err)
		}
		what := "maps blocks"
		if holes {
			what = "all holes"
		}
		fmt.Fprintf(s.out, "  data: chunks of 2^%d bytes, %s, %s\n", erofs.BlockBits+in.StartBlock&erofs.ChunkFormatBlkbitsMask, kind, what)
	}
	if in.IsSymlink() {
		target, err := im.Readlink(in)
		if err != nil {
			s.report(path, err)
			return
		}
		fmt.Fprintf(s.out, "  symlink -> %q\n", target)
	}
	if in.IsRegular() {
		if p, ok, err := im.Redirect(in); err != nil {
			s.report(path, err)
		} else if ok {
			fmt.Fprintf(s.out, "  redirect: %s\n", p)
		}
		if alg, d, ok, err := im.Metacopy(in); err != nil {
			s.report(path, err)
		} else if ok && d != nil {
			fmt.Fprintf(s.out, "  metacopy: %s %x\n", alg, d)
		} else if ok {
			fmt.Fprintf(s.out, "  metacopy: no digest\n")
		}
	}
}

func typeName(mode uint32) string {
	switch mode & erofs.ModeFmt {
	case erofs.ModeReg:
		return "regular file"
	case erofs.ModeDir:
		return "directory"
	case erofs.ModeLnk:
		return "symlink"
	case erofs.ModeChr:
		return "char device"
	case erofs.ModeBlk:
		return "block device"
	case erofs.ModeFifo:
		return "fifo"
	case erofs.ModeSock:
		return "socket"
	}
	return "unknown type"
}

func layoutName(l uint8) string {
	switch l {
	case erofs.LayoutFlatPlain:
		return "flat-plain"
	case erofs.LayoutFlatInline:
		return "flat-inline"
	case erofs.LayoutChunkBased:
		return "chunk-based"
	}
	return fmt.Sprintf("layout %d", l)
}
