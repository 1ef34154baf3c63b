package dumpfile

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// AppendLine appends e to dst as one dumpfile line, newline included,
// byte for byte as composefs-info dump prints it: paths escaped as standard,
// payload and content with a lone "-" escaped, xattr names and values with
// '=' escaped too. A hardlink is written with "@" before its mode and its
// target in the payload field; its other fields are written as the entry
// holds them (composefs-info repeats the target's there).
func AppendLine(dst []byte, e *Entry) ([]byte, error) {
	if e.Digest != "" {
		if d, err := parseDigest([]byte(e.Digest)); err != nil || d != e.Digest {
			return dst, fmt.Errorf("%s: digest %q is not 64 or 128 lowercase hex digits", Escape(e.Path), e.Digest)
		}
	}
	if e.Path == "" {
		return dst, fmt.Errorf("entry without a path")
	}
	dst = appendEscaped(dst, []byte(e.Path), escapeStandard)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, e.Size, 10)
	dst = append(dst, ' ')
	if e.IsHardlink() {
		dst = append(dst, '@')
	}
	dst = strconv.AppendUint(dst, uint64(e.Mode), 8)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(e.Nlink), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(e.UID), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(e.GID), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, e.Rdev, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, e.Mtime.Sec, 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(e.Mtime.Nsec), 10)
	dst = append(dst, ' ')
	if e.IsHardlink() {
		dst = appendEscaped(dst, []byte(e.Hardlink), escapeLoneDash)
	} else {
		dst = appendOptional(dst, []byte(e.Payload), e.Payload != "", escapeLoneDash)
	}
	dst = append(dst, ' ')
	dst = appendOptional(dst, e.Content, len(e.Content) > 0, escapeLoneDash)
	dst = append(dst, ' ')
	if e.Digest != "" {
		dst = append(dst, e.Digest...)
	} else {
		dst = append(dst, '-')
	}
	for _, x := range e.Xattrs {
		dst = append(dst, ' ')
		dst = appendEscaped(dst, []byte(x.Name), escapeEqual)
		dst = append(dst, '=')
		dst = appendEscaped(dst, x.Value, escapeEqual)
	}
	return append(dst, '\n'), nil
}

// Write writes e to w as one dumpfile line (see AppendLine).
func Write(w io.Writer, e *Entry) error {
	line, err := AppendLine(nil, e)
	if err != nil {
		return err
	}
	_, err = w.Write(line)
	return err
}

// Writer writes dumpfile lines through a buffer; call Flush at the end.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write writes one entry as a line.
func (w *Writer) Write(e *Entry) error {
	var err error
	w.buf, err = AppendLine(w.buf[:0], e)
	if err != nil {
		return err
	}
	_, err = w.w.Write(w.buf)
	return err
}

// Flush writes any buffered data to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }

// WriteAll writes entries as a dumpfile, in the order given.
func WriteAll(w io.Writer, entries []Entry) error {
	bw := NewWriter(w)
	for i := range entries {
		if err := bw.Write(&entries[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}
