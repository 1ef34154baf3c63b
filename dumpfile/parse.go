package dumpfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ParseOptions tune the parser.
type ParseOptions struct {
	// Strict adds the checks C mkcomposefs makes when CFS_PARSE_STRICT is
	// set in its environment: the last line must end in a newline, only
	// character and block devices may have a non-zero RDEV, and a symlink's
	// SIZE must be its target's length and it must have no CONTENT.
	Strict bool
}

// ParseError is a dumpfile line the parser refuses, with the reason.
type ParseError struct {
	// Line is the 1-based line number.
	Line int
	// Path is the entry's path when it was read before the error, else "".
	Path string
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("dumpfile: %v", e.Err)
	}
	if e.Path != "" {
		return fmt.Sprintf("dumpfile line %d: %s: %v", e.Line, Escape(e.Path), e.Err)
	}
	return fmt.Sprintf("dumpfile line %d: %v", e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parser reads a dumpfile one entry at a time. It applies every rule that
// concerns a single line; the rules that relate lines to each other (root
// first, parents before children, hardlink targets) are TreeChecker's, which
// ParseAll adds.
type Parser struct {
	r    *bufio.Reader
	opts ParseOptions
	line int
	buf  []byte
	err  error // sticky: after an error or the end, Next keeps returning it
}

// NewParser returns a parser reading dumpfile text from r.
func NewParser(r io.Reader, opts ParseOptions) *Parser {
	return &Parser{r: bufio.NewReaderSize(r, 64<<10), opts: opts}
}

// Line is the number of the line the last Next call read (1-based).
func (p *Parser) Line() int { return p.line }

// Next returns the next entry, or io.EOF after the last one. Errors are
// *ParseError naming the line, except errors of the underlying reader.
func (p *Parser) Next() (*Entry, error) {
	if p.err != nil {
		return nil, p.err
	}
	line, newline, err := p.readLine()
	if err != nil {
		p.err = err
		return nil, err
	}
	p.line++
	e, err := parseLine(line, p.opts)
	if err == nil && !newline && p.opts.Strict {
		err = errors.New("missing trailing newline")
	}
	if err != nil {
		perr := &ParseError{Line: p.line, Err: err}
		if e != nil {
			perr.Path = e.Path
		}
		p.err = perr
		return nil, perr
	}
	return e, nil
}

// readLine returns the next line without its newline, and whether it had
// one. The returned slice is valid until the next call.
func (p *Parser) readLine() ([]byte, bool, error) {
	p.buf = p.buf[:0]
	for {
		chunk, err := p.r.ReadSlice('\n')
		p.buf = append(p.buf, chunk...)
		if len(p.buf) > lineMax+1 {
			return nil, false, &ParseError{Line: p.line + 1, Err: fmt.Errorf("line longer than %d bytes", lineMax)}
		}
		switch err {
		case nil:
			return p.buf[:len(p.buf)-1], true, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(p.buf) == 0 {
				return nil, false, io.EOF
			}
			return p.buf, false, nil
		default:
			return nil, false, err
		}
	}
}

// Parse reads every entry of a dumpfile and hands each to fn, in file order,
// stopping at the first error (fn's errors are returned as they are). It
// applies the per-line rules only; see ParseAll for the whole-tree rules. The
// entry passed to fn is fn's to keep.
func Parse(r io.Reader, opts ParseOptions, fn func(*Entry) error) error {
	p := NewParser(r, opts)
	for {
		e, err := p.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// ParseAll reads a whole dumpfile and checks it as C mkcomposefs does before
// it builds an image: every per-line rule, plus the tree rules of
// TreeChecker. Beyond C, it refuses hardlinked whiteouts, as composefs-rs
// does (ErrHardlinkedWhiteout). The entries are returned in file order.
func ParseAll(r io.Reader, opts ParseOptions) ([]Entry, error) {
	var entries []Entry
	tc := NewTreeChecker()
	p := NewParser(r, opts)
	for {
		e, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := tc.Add(e, p.Line()); err != nil {
			return nil, err
		}
		entries = append(entries, *e)
	}
	if err := tc.Finish(); err != nil {
		return nil, err
	}
	return entries, nil
}

// The fixed fields of a line, in order; extended attributes follow.
const (
	fieldPath = iota
	fieldSize
	fieldMode
	fieldNlink
	fieldUID
	fieldGID
	fieldRdev
	fieldMtime
	fieldPayload
	fieldContent
	fieldDigest
	numFixedFields
)

// splitFields cuts the fixed fields off a line at single spaces, as C's
// split_at does: missing fields are empty, and the rest of the line (the
// xattrs) is returned unsplit.
func splitFields(line []byte) (fields [numFixedFields][]byte, rest []byte) {
	for i := range fields {
		j := bytes.IndexByte(line, ' ')
		if j < 0 {
			fields[i] = line
			line = line[len(line):]
			continue
		}
		fields[i] = line[:j]
		line = line[j+1:]
	}
	return fields, line
}

// parseLine turns one line into an entry. On error the entry, when not nil,
// carries the path read so far, for the message.
func parseLine(line []byte, opts ParseOptions) (*Entry, error) {
	// C refuses raw NULs: they would make the line ambiguous.
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return nil, fmt.Errorf("invalid embedded NUL character at position %d", i)
	}
	f, xattrText := splitFields(line)

	rawPath, err := unescape(nil, f[fieldPath])
	if err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	path, err := canonicalPath(rawPath)
	if err != nil {
		return nil, err
	}
	e := &Entry{Path: path}

	modeField := f[fieldMode]
	hardlink := len(modeField) > 0 && modeField[0] == '@'
	if hardlink {
		modeField = modeField[1:]
	}
	mode, err := parseUint(modeField, 8, 32)
	if err != nil {
		return e, fmt.Errorf("mode: %w", err)
	}
	e.Mode = uint32(mode)
	if !validType(e.Mode) {
		return e, fmt.Errorf("invalid mode %o: unknown file type", e.Mode)
	}

	if hardlink {
		return e, parseHardlink(e, f, xattrText)
	}

	if e.Size, err = parseUint(f[fieldSize], 10, 64); err != nil {
		return e, fmt.Errorf("size: %w", err)
	}
	var n uint64
	if n, err = parseUint(f[fieldNlink], 10, 32); err != nil {
		return e, fmt.Errorf("nlink: %w", err)
	}
	e.Nlink = uint32(n)
	if n, err = parseUint(f[fieldUID], 10, 32); err != nil {
		return e, fmt.Errorf("uid: %w", err)
	}
	e.UID = uint32(n)
	if n, err = parseUint(f[fieldGID], 10, 32); err != nil {
		return e, fmt.Errorf("gid: %w", err)
	}
	e.GID = uint32(n)
	if e.Rdev, err = parseUint(f[fieldRdev], 10, 64); err != nil {
		return e, fmt.Errorf("rdev: %w", err)
	}
	if e.Mtime, err = parseMtime(f[fieldMtime]); err != nil {
		return e, err
	}

	payload, hasPayload, err := unescapeOptional(f[fieldPayload])
	if err != nil {
		return e, fmt.Errorf("payload: %w", err)
	}
	content, hasContent, err := unescapeOptional(f[fieldContent])
	if err != nil {
		return e, fmt.Errorf("content: %w", err)
	}
	if hasContent && uint64(len(content)) != e.Size {
		return e, fmt.Errorf("invalid content size %d, must match size %d", len(content), e.Size)
	}
	digest, hasDigest, err := unescapeOptional(f[fieldDigest])
	if err != nil {
		return e, fmt.Errorf("digest: %w", err)
	}

	switch e.Type() {
	case TypeChar, TypeBlock:
	default:
		if opts.Strict && e.Rdev != 0 {
			return e, errors.New("non-zero device number on a non-device")
		}
		// C keeps RDEV only for devices.
		e.Rdev = 0
	}
	if e.IsWhiteout() && e.Nlink > 1 {
		return e, fmt.Errorf("whiteout with nlink %d: %w", e.Nlink, ErrHardlinkedWhiteout)
	}

	if e.IsSymlink() {
		if !hasPayload || len(payload) == 0 {
			return e, errors.New("invalid symlink: empty target")
		}
		if err := checkPayload(payload); err != nil {
			return e, fmt.Errorf("symlink target: %w", err)
		}
		if opts.Strict {
			if e.Size != uint64(len(payload)) {
				return e, fmt.Errorf("invalid symlink size %d, must match target length %d", e.Size, len(payload))
			}
			if len(content) > 0 {
				return e, errors.New("symlink cannot have content")
			}
		}
		// C ignores a symlink's SIZE and CONTENT: its size is its target's.
		e.Payload = string(payload)
		e.Size = uint64(len(payload))
	} else {
		if hasPayload {
			if err := checkPayload(payload); err != nil {
				return e, fmt.Errorf("payload: %w", err)
			}
			e.Payload = string(payload)
		}
		if len(content) > InlineContentMax {
			return e, fmt.Errorf("inline content size %d exceeds maximum %d", len(content), InlineContentMax)
		}
		if len(content) > 0 {
			e.Content = content
		}
		if e.IsRegular() && e.Content == nil && e.Size > ExternalSizeMax {
			return e, fmt.Errorf("file size %d exceeds the maximum %d a composefs image can describe", e.Size, uint64(ExternalSizeMax))
		}
	}

	// A line cut short has an empty DIGEST field; C then sets no
	// meaningful digest, so neither do we.
	if hasDigest && len(digest) > 0 {
		if e.Digest, err = parseDigest(digest); err != nil {
			return e, err
		}
	}

	if len(xattrText) > xattrTextMax {
		return e, fmt.Errorf("too many xattrs: %d bytes of xattr text, maximum %d", len(xattrText), xattrTextMax)
	}
	if e.Xattrs, err = parseXattrs(xattrText); err != nil {
		return e, err
	}
	return e, nil
}

// parseHardlink fills a hardlink entry. C reads nothing of a hardlink line
// but its path, the file type and the target (the other fields of a
// composefs-info dump repeat the target's); we keep the other fields when
// they are well formed, so such a dump prints back the same, and leave them
// zero when not, since C ignores them.
func parseHardlink(e *Entry, f [numFixedFields][]byte, xattrText []byte) error {
	if e.IsDir() {
		return errors.New("directories can't be hardlinked")
	}
	target, ok, err := unescapeOptional(f[fieldPayload])
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if !ok {
		return errors.New("hardlink without a target path")
	}
	if e.Hardlink, err = canonicalTarget(target); err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}

	e.Size, _ = parseUint(f[fieldSize], 10, 64)
	if n, err := parseUint(f[fieldNlink], 10, 32); err == nil {
		e.Nlink = uint32(n)
	}
	if n, err := parseUint(f[fieldUID], 10, 32); err == nil {
		e.UID = uint32(n)
	}
	if n, err := parseUint(f[fieldGID], 10, 32); err == nil {
		e.GID = uint32(n)
	}
	e.Rdev, _ = parseUint(f[fieldRdev], 10, 64)
	e.Mtime, _ = parseMtime(f[fieldMtime])
	if content, ok, err := unescapeOptional(f[fieldContent]); err == nil && ok && len(content) > 0 {
		e.Content = content
	}
	if d, ok, err := unescapeOptional(f[fieldDigest]); err == nil && ok {
		e.Digest, _ = parseDigest(d)
	}
	if len(xattrText) <= xattrTextMax {
		e.Xattrs, _ = parseXattrs(xattrText)
	}
	return nil
}

// unescapeOptional unescapes a field that may be "-" for absent. A present
// but empty field gives an empty, non-nil slice.
func unescapeOptional(field []byte) ([]byte, bool, error) {
	if len(field) == 1 && field[0] == '-' {
		return nil, false, nil
	}
	v, err := unescape(make([]byte, 0, len(field)), field)
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// checkPayload applies C's payload rules. C keeps payloads as C strings, so
// an escaped NUL would silently cut one short; we refuse it.
func checkPayload(p []byte) error {
	if bytes.IndexByte(p, 0) >= 0 {
		return errors.New("embedded NUL")
	}
	if len(p) > PayloadMax {
		return fmt.Errorf("length %d exceeds maximum %d", len(p), PayloadMax)
	}
	return nil
}

// parseUint reads an unsigned number of the given base and bit size. C's
// strtoull also takes leading blanks, a sign, and silently saturates or
// truncates; we accept digits only and refuse values that do not fit.
func parseUint(field []byte, base, bits int) (uint64, error) {
	if len(field) == 0 {
		return 0, errors.New(`invalid integer ""`)
	}
	var v uint64
	limit := uint64(1)<<bits - 1
	if bits == 64 {
		limit = ^uint64(0)
	}
	for _, c := range field {
		d := uint64(c) - '0'
		if c < '0' || d >= uint64(base) {
			return 0, fmt.Errorf("invalid integer %q", field)
		}
		if v > (limit-d)/uint64(base) {
			return 0, fmt.Errorf("integer %q out of range", field)
		}
		v = v*uint64(base) + d
	}
	return v, nil
}

// parseMtime reads SEC.NSEC; the seconds may be negative (C reads them
// through strtoull and keeps them as a signed 64-bit number, so "-1"
// round-trips through composefs-info).
func parseMtime(field []byte) (Timespec, error) {
	dot := bytes.IndexByte(field, '.')
	if dot < 0 {
		return Timespec{}, fmt.Errorf("invalid mtime %q: want SEC.NSEC", field)
	}
	secField, neg := field[:dot], false
	if len(secField) > 0 && secField[0] == '-' {
		secField, neg = secField[1:], true
	}
	sec, err := parseUint(secField, 10, 64)
	if err == nil && (sec > 1<<63 || (sec == 1<<63 && !neg)) {
		err = fmt.Errorf("integer %q out of range", field[:dot])
	}
	if err != nil {
		return Timespec{}, fmt.Errorf("mtime seconds: %w", err)
	}
	nsec, err := parseUint(field[dot+1:], 10, 32)
	if err != nil {
		return Timespec{}, fmt.Errorf("mtime nanoseconds: %w", err)
	}
	t := Timespec{Sec: int64(sec), Nsec: uint32(nsec)}
	if neg {
		t.Sec = -int64(sec)
	}
	return t, nil
}

// parseDigest checks an fs-verity digest: sha256 (64 hex digits) or sha512
// (128), returned in lowercase. C takes anything and keeps what it can
// decode; we refuse the rest.
func parseDigest(d []byte) (string, error) {
	if len(d) != 64 && len(d) != 128 {
		return "", fmt.Errorf("invalid digest %q: want 64 (sha256) or 128 (sha512) hex digits, got %d characters", truncate(d, 140), len(d))
	}
	out := make([]byte, len(d))
	for i, c := range d {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			out[i] = c
		case c >= 'A' && c <= 'F':
			out[i] = c + 'a' - 'A'
		default:
			return "", fmt.Errorf("invalid digest %q: not hexadecimal", d)
		}
	}
	return string(out), nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
