package dumpfile

import (
	"errors"
	"fmt"
)

// How a field is escaped when written. composefs-info picks one of these per
// field; the choice decides which bytes are hex-escaped.
type escapeMode uint8

const (
	// escapeStandard (paths): backslash and \n \r \t by name, every other
	// byte that is not graphic in the C locale (0x21..0x7e) as \xHH.
	escapeStandard escapeMode = 0
	// escapeEqual (xattr names and values): standard, plus '='.
	escapeEqual escapeMode = 1 << 0
	// escapeLoneDash (payload, content): standard, plus a value that is
	// exactly "-" written as \x2d so it is not read back as "absent".
	escapeLoneDash escapeMode = 1 << 1
	// escapeKeepSpace (paths in composefs-info ls): standard, but a space
	// is written as it is.
	escapeKeepSpace escapeMode = 1 << 2
)

const hexDigits = "0123456789abcdef"

// appendEscaped appends s to dst escaped as composefs-info escapes it.
func appendEscaped(dst []byte, s []byte, mode escapeMode) []byte {
	if mode&escapeLoneDash != 0 && len(s) == 1 && s[0] == '-' {
		return append(dst, `\x2d`...)
	}
	for _, c := range s {
		switch {
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == ' ' && mode&escapeKeepSpace != 0:
			dst = append(dst, c)
		case c == '=' && mode&escapeEqual != 0, c <= ' ', c >= 0x7f:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendOptional appends s escaped, or "-" when absent.
func appendOptional(dst []byte, s []byte, present bool, mode escapeMode) []byte {
	if !present {
		return append(dst, '-')
	}
	return appendEscaped(dst, s, mode)
}

// AppendEscaped appends s escaped as composefs-info escapes a path or a
// payload; keepSpace leaves spaces as they are (as its ls does for paths).
func AppendEscaped(dst []byte, s string, keepSpace bool) []byte {
	mode := escapeStandard
	if keepSpace {
		mode |= escapeKeepSpace
	}
	return appendEscaped(dst, []byte(s), mode)
}

// Escape returns s escaped as composefs-info escapes a path.
func Escape(s string) string {
	return string(appendEscaped(nil, []byte(s), escapeStandard))
}

// Unescape undoes the dumpfile escapes (\\ \n \r \t \xHH) in one field; any
// other backslash sequence is an error, as in C.
func Unescape(s string) ([]byte, error) {
	return unescape(nil, []byte(s))
}

var errNoEscapeChar = errors.New("no character after escape")

// unescape appends the unescaped field s to dst.
func unescape(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, errNoEscapeChar
		}
		switch s[i] {
		case '\\':
			dst = append(dst, '\\')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'x':
			if i+2 >= len(s) {
				return nil, errors.New("no hex characters after hex escape")
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return nil, fmt.Errorf("invalid hex characters %q after hex escape", s[i+1:i+3])
			}
			dst = append(dst, byte(hi<<4|lo))
			i += 2
		default:
			return nil, fmt.Errorf("unsupported escape %q", []byte{'\\', s[i]})
		}
	}
	return dst, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
