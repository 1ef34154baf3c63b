package objects

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/composefs/composefs-go/internal/errpath"
)

// maxSecretFile bounds a token or header file: such files are short.
const maxSecretFile = 64 << 10

// ParseHeaderFile reads HTTP headers for a private store, one "Name:
// value" a line; empty lines and lines starting with '#' are skipped.
// Names must be HTTP tokens and values printable (no control bytes).
// Messages give the line number, never a value: values are secrets.
func ParseHeaderFile(data []byte) (http.Header, error) {
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("%d bytes, more than a header file holds (%d)", len(data), maxSecretFile)
	}
	h := http.Header{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no ':' between a name and a value", i+1)
		}
		if !isToken(name) {
			return nil, fmt.Errorf("line %d: %q is no header name", i+1, name)
		}
		value = strings.TrimSpace(value)
		if value == "" || !printable(value) {
			return nil, fmt.Errorf("line %d: header %s: empty value or control bytes in it", i+1, name)
		}
		h.Add(name, value)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("no header in it")
	}
	return h, nil
}

// BearerHeader is the Authorization header for the token in a token
// file: its content, surrounding white space trimmed.
func BearerHeader(data []byte) (http.Header, error) {
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("%d bytes, more than a token file holds (%d)", len(data), maxSecretFile)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" || !printable(tok) || strings.ContainsAny(tok, " \t") {
		return nil, fmt.Errorf("not one token: empty, or spaces or control bytes in it")
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}

// LoadCAFile is the system's certificate authorities and those in the
// PEM file path.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errpath.New("CA file", path, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, errpath.New("CA file", path, fmt.Errorf("certificate %d: %w", n+1, err))
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errpath.New("CA file", path, fmt.Errorf("no PEM certificate in it"))
	}
	return pool, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
