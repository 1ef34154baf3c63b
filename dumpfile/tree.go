package dumpfile

import (
	"errors"
	"fmt"
)

// TreeChecker applies the rules C mkcomposefs makes across the lines of a
// dumpfile, fed one entry at a time: the root "/" comes first and is a
// directory, a path's parent is an earlier directory, no path appears twice,
// and (checked by Finish, since targets may come later) every hardlink
// reaches an entry that exists, is not itself and is not a directory,
// without a cycle. Beyond C, and as composefs-rs, a hardlink may not reach a
// whiteout (ErrHardlinkedWhiteout).
type TreeChecker struct {
	nodes map[string]treeNode
	links []string // paths of hardlink entries, in the order added
	root  bool
}

type treeNode struct {
	dir      bool
	whiteout bool
	hardlink string
	line     int
}

// NewTreeChecker returns an empty checker.
func NewTreeChecker() *TreeChecker {
	return &TreeChecker{nodes: make(map[string]treeNode)}
}

// Add checks the next entry. line is what errors report as the line (a
// dumpfile line number, or any 1-based position that helps the caller).
// Errors are *ParseError.
func (c *TreeChecker) Add(e *Entry, line int) error {
	fail := func(format string, args ...any) error {
		return &ParseError{Line: line, Path: e.Path, Err: fmt.Errorf(format, args...)}
	}
	if e.IsHardlink() && e.IsDir() {
		return fail("directories can't be hardlinked")
	}
	dir := e.IsDir() && !e.IsHardlink()
	if e.Path == "/" {
		if !dir {
			return fail("root must be a directory")
		}
		if c.root {
			return fail("can't have multiple roots")
		}
		c.root = true
	} else {
		if !c.root {
			return fail("root directory not present: the first entry must be /")
		}
		parent, _ := parentOf(e.Path)
		p, ok := c.nodes[parent]
		if !ok {
			return fail("parent directory %s missing", Escape(parent))
		}
		if !p.dir {
			return fail("parent %s is not a directory", Escape(parent))
		}
		if old, ok := c.nodes[e.Path]; ok {
			return fail("path already exists (line %d)", old.line)
		}
	}
	c.nodes[e.Path] = treeNode{dir: dir, whiteout: e.IsWhiteout() && !e.IsHardlink(), hardlink: e.Hardlink, line: line}
	if e.IsHardlink() {
		c.links = append(c.links, e.Path)
	}
	return nil
}

// Finish checks what needs the whole tree: that there is a root, and every
// hardlink.
func (c *TreeChecker) Finish() error {
	if !c.root {
		return &ParseError{Err: errors.New("no entries: a composefs tree needs a root directory /")}
	}
	for _, path := range c.links {
		n := c.nodes[path]
		if err := c.resolve(path, n.hardlink); err != nil {
			return &ParseError{Line: n.line, Path: path, Err: err}
		}
	}
	return nil
}

// resolve follows a hardlink from path to target through any chain of
// hardlinks to the entry that holds the data.
func (c *TreeChecker) resolve(path, target string) error {
	if target == path {
		return fmt.Errorf("self-referential hardlink %s", Escape(target))
	}
	cur := target
	for steps := 0; ; steps++ {
		n, ok := c.nodes[cur]
		if !ok {
			return fmt.Errorf("no target at %s for hardlink", Escape(cur))
		}
		if n.hardlink == "" {
			if n.dir {
				return fmt.Errorf("hardlink to directory %s", Escape(cur))
			}
			if n.whiteout {
				return fmt.Errorf("hardlink to whiteout %s: %w", Escape(cur), ErrHardlinkedWhiteout)
			}
			return nil
		}
		if n.hardlink == path || steps > len(c.links) {
			return fmt.Errorf("hardlink cycle through %s", Escape(target))
		}
		cur = n.hardlink
	}
}

// Resolve returns, for a hardlink entry, the entry that holds its data,
// following chains of hardlinks; for any other entry, the entry itself. byPath must map every path of a tree that passed TreeChecker to its
// entry.
func Resolve(byPath map[string]*Entry, e *Entry) (*Entry, error) {
	cur := e
	for steps := 0; cur.IsHardlink(); steps++ {
		next, ok := byPath[cur.Hardlink]
		if !ok {
			return nil, fmt.Errorf("%s: no target at %s for hardlink", Escape(cur.Path), Escape(cur.Hardlink))
		}
		if steps > len(byPath) {
			return nil, fmt.Errorf("%s: hardlink cycle", Escape(e.Path))
		}
		cur = next
	}
	return cur, nil
}
