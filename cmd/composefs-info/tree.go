package main

import (
	"bufio"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/errpath"
)

// tree is one image read whole, as C loads it before printing anything: an
// image that fails half-way prints nothing.
type tree struct {
	path    string
	entries []dumpfile.Entry
}

// loadTree reads the dump view of the image at path.
func loadTree(path string, filters []string) (*tree, error) {
	im, err := erofs.Open(path)
	if err != nil {
		return nil, fail("%s: %v", path, errpath.Cause(err, path))
	}
	defer im.Close()
	t := &tree{path: path}
	err = im.WalkFilter(filters, func(e *dumpfile.Entry) error {
		t.entries = append(t.entries, *e)
		return nil
	})
	if err != nil {
		return nil, fail("%s: %v", path, err)
	}
	return t, nil
}

// eachImage loads every image in turn and hands it to fn.
func eachImage(paths, filters []string, fn func(*tree) error) error {
	for _, p := range paths {
		t, err := loadTree(p, filters)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}

func printDump(t *tree, out *bufio.Writer) error {
	var line []byte
	for i := range t.entries {
		var err error
		line, err = dumpfile.AppendLine(line[:0], &t.entries[i])
		if err != nil {
			return fail("%s: %v", t.path, err)
		}
		out.Write(line)
	}
	return nil
}

// printLs prints every path below the root: directories with "/", symlinks
// with "-> target", external files with "@ payload"; a hardlink is its bare
// path (C's link nodes carry no mode of their own).
func printLs(t *tree, out *bufio.Writer) error {
	var line []byte
	for i := range t.entries {
		e := &t.entries[i]
		if e.Path == "/" {
			continue
		}
		line = dumpfile.AppendEscaped(line[:0], e.Path, true)
		switch {
		case e.Hardlink != "":
		case e.IsDir():
			line = append(line, "/\t"...)
		case e.IsSymlink():
			line = append(line, "\t-> "...)
			line = dumpfile.AppendEscaped(line, e.Payload, false)
		case e.IsRegular() && e.Payload != "":
			line = append(line, "\t@ "...)
			line = dumpfile.AppendEscaped(line, e.Payload, false)
		}
		line = append(line, '\n')
		out.Write(line)
	}
	return nil
}
