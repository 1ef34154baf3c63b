package dumpfile

import (
	"bytes"
	"errors"
	"fmt"
)

// parseXattrs reads the KEY=VALUE fields that end a line, with C's rules:
// fields are separated by single spaces (so an empty field is an error), the
// first raw '=' separates key from value, a repeated key replaces the
// earlier value, and the names and the space they use are bounded.
func parseXattrs(text []byte) ([]Xattr, error) {
	var xattrs []Xattr
	space := 0
	for len(text) > 0 {
		field := text
		if i := bytes.IndexByte(text, ' '); i >= 0 {
			field, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		eq := bytes.IndexByte(field, '=')
		if eq < 0 {
			return nil, fmt.Errorf("missing = in xattr %q", truncate(field, 80))
		}
		name, err := unescape(nil, field[:eq])
		if err != nil {
			return nil, fmt.Errorf("xattr name: %w", err)
		}
		value, err := unescape(make([]byte, 0, len(field)-eq-1), field[eq+1:])
		if err != nil {
			return nil, fmt.Errorf("xattr %q value: %w", name, err)
		}
		if xattrs, space, err = setXattr(xattrs, space, string(name), value); err != nil {
			return nil, err
		}
	}
	return xattrs, nil
}

// setXattr adds or replaces one xattr exactly as lcfs_node_set_xattr does,
// including where a replaced xattr ends up (the old one is removed by moving
// the last into its place, the new one is appended) and the space C charges,
// which must stay within XattrSpaceMax at every step. space is the charge so
// far; the new charge is returned.
func setXattr(xattrs []Xattr, space int, name string, value []byte) ([]Xattr, int, error) {
	if len(name) == 0 {
		return nil, 0, errors.New("empty xattr name")
	}
	if len(name) > XattrNameMax {
		return nil, 0, fmt.Errorf("xattr name of %d bytes exceeds maximum %d", len(name), XattrNameMax)
	}
	// C keeps names as C strings; a NUL would cut the name short.
	if bytes.IndexByte([]byte(name), 0) >= 0 {
		return nil, 0, fmt.Errorf("xattr name %q has an embedded NUL", name)
	}
	if len(value) > XattrValueMax {
		return nil, 0, fmt.Errorf("xattr %q value of %d bytes exceeds maximum %d", name, len(value), XattrValueMax)
	}
	for i := range xattrs {
		if xattrs[i].Name != name {
			continue
		}
		last := len(xattrs) - 1
		if last == 0 {
			space = 0
		} else {
			space -= xattrEntryOverhead + len(name) + len(xattrs[i].Value)
		}
		xattrs[i] = xattrs[last]
		xattrs = xattrs[:last]
		break
	}
	need := xattrEntryOverhead + len(name) + len(value)
	if len(xattrs) == 0 {
		need += xattrHeaderSize
	}
	if space+need > XattrSpaceMax {
		return nil, 0, fmt.Errorf("xattr %q: xattrs use %d bytes, more than the maximum %d", truncate([]byte(name), 80), space+need, XattrSpaceMax)
	}
	return append(xattrs, Xattr{Name: name, Value: value}), space + need, nil
}

// CheckXattrs applies C's limits on the xattrs of one entry from outside
// input (a dumpfile line, or a file mkcomposefs reads): names of 1 to
// XattrNameMax bytes without NUL, values of at most XattrValueMax bytes, at
// most XattrSpaceMax bytes of space as C counts it, and no name twice.
func CheckXattrs(xattrs []Xattr) error {
	var (
		set   []Xattr
		space int
		err   error
	)
	for _, x := range xattrs {
		n := len(set)
		if set, space, err = setXattr(set, space, x.Name, x.Value); err != nil {
			return err
		}
		if len(set) == n {
			return fmt.Errorf("duplicate xattr %q", x.Name)
		}
	}
	return nil
}
