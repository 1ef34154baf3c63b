package source

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultRegistriesConf is where containers tools read registries.conf;
// its drop-ins are the *.conf files in the directory of the same name
// with .d appended.
const DefaultRegistriesConf = "/etc/containers/registries.conf"

// registryEntry is what this package takes from one [[registry]] table:
// whether the registry or namespace its prefix names is insecure (plain
// HTTP or an unverified certificate allowed).
type registryEntry struct {
	prefix   string
	location string // where the prefix's images are pulled from
	insecure bool
}

// registriesConf is the insecure settings of registries.conf and its
// drop-ins: the [[registry]] tables (prefix, or location when there is
// none; insecure) and the version 1 [registries.insecure] registries
// list. Everything else in the files is read past.
type registriesConf struct {
	entries []registryEntry
}

// loadRegistriesConf reads path and then path.d/*.conf in name order, as
// containers tools do; a later table with the same prefix replaces an
// earlier one. A missing file or directory is no error.
func loadRegistriesConf(path string) (*registriesConf, error) {
	files := []string{path}
	drop, err := filepath.Glob(filepath.Join(path+".d", "*.conf"))
	if err != nil {
		return nil, err
	}
	sort.Strings(drop)
	files = append(files, drop...)
	rc := new(registriesConf)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		entries, err := parseRegistriesConf(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, e := range entries {
			rc.add(e)
		}
	}
	return rc, nil
}

func (rc *registriesConf) add(e registryEntry) {
	for i := range rc.entries {
		if rc.entries[i].prefix == e.prefix {
			rc.entries[i] = e
			return
		}
	}
	rc.entries = append(rc.entries, e)
}

// insecure reports whether repo (HOST[:PORT]/PATH, no tag) is insecure:
// the entry with the longest prefix matching it says. A prefix matches
// the repository it names and those beneath it; *.DOMAIN matches hosts
// ending in .DOMAIN.
func (rc *registriesConf) insecure(repo string) bool {
	host, _, _ := strings.Cut(repo, "/")
	best, bestLen := false, -1
	for _, e := range rc.entries {
		var match bool
		if domain, ok := strings.CutPrefix(e.prefix, "*."); ok {
			h, _, _ := strings.Cut(host, ":")
			match = strings.HasSuffix(h, "."+domain)
		} else {
			match = repo == e.prefix || strings.HasPrefix(repo, e.prefix+"/")
		}
		if match && len(e.prefix) > bestLen {
			best, bestLen = e.insecure, len(e.prefix)
		}
	}
	return best
}

// parseRegistriesConf reads the insecure settings of one registries.conf
// file. It is a TOML reader for what that file holds: comments, tables and
// arrays of tables, keys with strings, booleans, numbers, arrays (across
// lines) and inline tables as values; other TOML (multi-line strings,
// dotted keys with values of interest) is an error naming the line.
func parseRegistriesConf(b []byte) ([]registryEntry, error) {
	var entries []registryEntry
	var cur *registryEntry // the [[registry]] table being read, if any
	hasPrefix := false
	table := ""
	flush := func() {
		if cur != nil {
			// A prefix that another location serves is a rewrite,
			// which pulls here do not follow: its insecure flag is
			// the location's, never the prefix's.
			rewrite := cur.location != "" && strings.TrimSuffix(cur.location, "/") != strings.TrimSuffix(cur.prefix, "/")
			if cur.prefix != "" && !rewrite {
				entries = append(entries, *cur)
			}
			cur = nil
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	lineNo := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		lineNo++
		return sc.Text(), true
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		start := lineNo
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		if strings.HasPrefix(t, "[") {
			name, array, err := tableHeader(t)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", start, err)
			}
			flush()
			table = name
			if array && name == "registry" {
				cur, hasPrefix = new(registryEntry), false
			} else if array {
				table = "[[" + name + "]]"
			}
			continue
		}
		key, rest, ok := strings.Cut(t, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key = value, [table] or [[table]]", start)
		}
		key, err := tomlKey(strings.TrimSpace(key))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		// A value is complete when its brackets and braces close; an
		// array may go on over more lines.
		text := strings.TrimSpace(rest)
		var v tomlValue
		for {
			var complete bool
			v, complete, err = parseTOMLValue(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", start, key, err)
			}
			if complete {
				break
			}
			more, ok := next()
			if !ok {
				return nil, fmt.Errorf("line %d: %s: value not closed at the end of the file", start, key)
			}
			text += "\n" + more
		}
		switch {
		case cur != nil && table == "registry":
			switch key {
			case "location", "prefix":
				if v.kind != tomlString {
					return nil, fmt.Errorf("line %d: %s is not a string", start, key)
				}
				if key == "prefix" {
					cur.prefix, hasPrefix = v.str, true
				} else {
					cur.location = v.str
					if !hasPrefix {
						cur.prefix = v.str
					}
				}
			case "insecure":
				if v.kind != tomlBool {
					return nil, fmt.Errorf("line %d: insecure is not true or false", start)
				}
				cur.insecure = v.b
			}
		case table == "registries.insecure" && key == "registries":
			if v.kind != tomlArray {
				return nil, fmt.Errorf("line %d: registries is not an array", start)
			}
			for _, s := range v.strs {
				entries = append(entries, registryEntry{prefix: s, insecure: true})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
	}
	flush()
	for i := range entries {
		entries[i].prefix = strings.TrimSuffix(entries[i].prefix, "/")
		if entries[i].prefix == "docker.io" || strings.HasPrefix(entries[i].prefix, "docker.io/") {
			// The registry's own name, as go-containerregistry spells it.
			entries[i].prefix = "index." + entries[i].prefix
		}
	}
	return entries, nil
}

// tableHeader reads [name] or [[name]], a comment allowed after it.
func tableHeader(t string) (name string, array bool, err error) {
	open, close := "[", "]"
	if strings.HasPrefix(t, "[[") {
		open, close, array = "[[", "]]", true
	}
	body, after, ok := strings.Cut(t[len(open):], close)
	if after = strings.TrimSpace(after); !ok || (after != "" && after[0] != '#') {
		return "", false, fmt.Errorf("table header %q not closed by %s", t, close)
	}
	var parts []string
	for _, p := range strings.Split(body, ".") {
		k, err := tomlKey(strings.TrimSpace(p))
		if err != nil {
			return "", false, err
		}
		parts = append(parts, k)
	}
	return strings.Join(parts, "."), array, nil
}

// tomlKey reads a bare or quoted key.
func tomlKey(k string) (string, error) {
	if k == "" {
		return "", fmt.Errorf("empty key")
	}
	if k[0] == '"' || k[0] == '\'' {
		s, rest, err := readTOMLString(k)
		if err != nil {
			return "", err
		}
		if rest != "" {
			return "", fmt.Errorf("key %q: text after the quoted key", k)
		}
		return s, nil
	}
	for _, c := range k {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", fmt.Errorf("key %q: character %q", k, c)
		}
	}
	return k, nil
}

type tomlKind int

const (
	tomlOther tomlKind = iota // a number, a date, an inline table
	tomlString
	tomlBool
	tomlArray
)

// tomlValue is a value read: a string, a boolean, or an array of which the
// strings are kept.
type tomlValue struct {
	kind tomlKind
	str  string
	b    bool
	strs []string
}

// parseTOMLValue reads the value text starts with (a comment may follow
// it). complete is false when an array or inline table is still open at
// the end of text, so the caller appends the next line and calls again.
func parseTOMLValue(text string) (v tomlValue, complete bool, err error) {
	v, rest, err := tomlValueAt(text, 0)
	if err == errOpen {
		return tomlValue{}, false, nil
	}
	if err != nil {
		return tomlValue{}, false, err
	}
	rest = strings.TrimLeft(rest, " \t")
	if rest != "" && rest[0] != '#' {
		return tomlValue{}, false, fmt.Errorf("text %q after the value", firstLine(rest))
	}
	return v, true, nil
}

var errOpen = fmt.Errorf("value not closed")

// maxDepth bounds nested arrays and inline tables.
const maxDepth = 32

func tomlValueAt(s string, depth int) (tomlValue, string, error) {
	if depth > maxDepth {
		return tomlValue{}, "", fmt.Errorf("values nested more than %d deep", maxDepth)
	}
	s = strings.TrimLeft(s, " \t")
	if s == "" {
		return tomlValue{}, "", fmt.Errorf("no value")
	}
	switch s[0] {
	case '"', '\'':
		str, rest, err := readTOMLString(s)
		return tomlValue{kind: tomlString, str: str}, rest, err
	case '[', '{':
		closer := byte(']')
		if s[0] == '{' {
			closer = '}'
		}
		v := tomlValue{kind: tomlArray}
		if closer == '}' {
			v.kind = tomlOther
		}
		s = s[1:]
		for {
			s = skipSpaceAndComments(s, closer == ']')
			if s == "" {
				return tomlValue{}, "", errOpen
			}
			if s[0] == closer {
				return v, s[1:], nil
			}
			if closer == '}' {
				// key = value
				k, rest, ok := strings.Cut(s, "=")
				if !ok || strings.ContainsAny(k, "\n}") {
					return tomlValue{}, "", fmt.Errorf("inline table entry without =")
				}
				if _, err := tomlKey(strings.TrimSpace(k)); err != nil {
					return tomlValue{}, "", err
				}
				s = rest
			}
			elem, rest, err := tomlValueAt(s, depth+1)
			if err != nil {
				return tomlValue{}, "", err
			}
			if elem.kind == tomlString {
				v.strs = append(v.strs, elem.str)
			}
			s = skipSpaceAndComments(rest, closer == ']')
			if s == "" {
				return tomlValue{}, "", errOpen
			}
			switch s[0] {
			case ',':
				s = s[1:]
			case closer:
			default:
				return tomlValue{}, "", fmt.Errorf("%q where , or %c belongs", s[0], closer)
			}
		}
	}
	// A bare word: a boolean, a number or a date.
	end := strings.IndexAny(s, " \t\n,]}#")
	if end < 0 {
		end = len(s)
	}
	word := s[:end]
	switch word {
	case "true", "false":
		return tomlValue{kind: tomlBool, b: word == "true"}, s[end:], nil
	}
	for _, c := range word {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune("+-_.:", c)) {
			return tomlValue{}, "", fmt.Errorf("value %q", word)
		}
	}
	return tomlValue{kind: tomlOther}, s[end:], nil
}

// skipSpaceAndComments skips blanks and, inside an array (where values may
// go on over lines), newlines and comments.
func skipSpaceAndComments(s string, multiline bool) string {
	for {
		s = strings.TrimLeft(s, " \t")
		if !multiline || s == "" {
			return s
		}
		switch s[0] {
		case '\n', '\r':
			s = s[1:]
		case '#':
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i:]
		default:
			return s
		}
	}
}

// readTOMLString reads a basic ("...", with escapes) or literal ('...')
// string on one line, returning it and the text after it.
func readTOMLString(s string) (string, string, error) {
	if strings.HasPrefix(s, `"""`) || strings.HasPrefix(s, `'''`) {
		return "", "", fmt.Errorf("multi-line strings are not supported")
	}
	q := s[0]
	if q == '\'' {
		i := strings.IndexAny(s[1:], "'\n")
		if i < 0 || s[1+i] != '\'' {
			return "", "", fmt.Errorf("string not closed")
		}
		return s[1 : 1+i], s[2+i:], nil
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\n':
			return "", "", fmt.Errorf("string not closed")
		case '\\':
			i++
		case '"':
			str, err := strconv.Unquote(s[:i+1])
			if err != nil {
				return "", "", fmt.Errorf("string %s: %v", s[:i+1], err)
			}
			return str, s[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("string not closed")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
