package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
)

// build reads the source, writes the image and prints its digest.
func build(s *settings, stdin io.Reader, stdout, stderr io.Writer) error {
	if s.image == "-" && isTerminal(stdout) {
		return fmt.Errorf("stdout is a tty, refusing to write the image there")
	}
	entries, err := loadSource(s, stdin, stderr)
	if err != nil {
		return err
	}
	opts := erofs.WriteOptions{MinVersion: s.minVersion, MaxVersion: s.maxVersion}

	h := verity.NewHasher(verity.SHA256)
	var out imageOutput
	switch {
	case s.printDigestOnly:
		out = discardOutput{}
	case s.image == "-":
		out = &streamOutput{w: stdout}
	default:
		out = newFileOutput(s.image)
	}
	w := io.Writer(out)
	if s.printDigest {
		w = io.MultiWriter(out, h)
	}
	if err := erofs.Write(w, entries, opts); err != nil {
		out.abort()
		return describeWriteError(s, err)
	}
	if err := out.commit(); err != nil {
		return err
	}
	if s.printDigest {
		if _, err := fmt.Fprintf(stdout, "%s\n", hex.EncodeToString(h.Sum())); err != nil {
			return err
		}
	}
	return nil
}

// describeWriteError names the source an invalid tree came from; a failure
// to write the image speaks for itself.
func describeWriteError(s *settings, err error) error {
	var oe *outputError
	if s.fromFile && !errors.As(err, &oe) {
		return fmt.Errorf("%s: %w", sourceName(s), err)
	}
	return err
}

func sourceName(s *settings) string {
	if s.source == "-" {
		return "<stdin>"
	}
	return s.source
}

// loadSource returns the entries of the dumpfile or directory SOURCE.
func loadSource(s *settings, stdin io.Reader, stderr io.Writer) ([]dumpfile.Entry, error) {
	if !s.fromFile {
		return scanDirectory(s, stderr)
	}
	r := stdin
	if s.source != "-" {
		f, err := os.Open(s.source)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.source, errpath.Cause(err, s.source))
		}
		defer f.Close()
		r = f
	}
	entries, err := dumpfile.ParseAll(r, dumpfile.ParseOptions{Strict: s.strict})
	if err != nil {
		// A read error names the file as well (read X: ...): keep
		// only its cause, after the name said once.
		return nil, fmt.Errorf("%s: %w", sourceName(s), errpath.Cause(err, s.source))
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: no files in dump file", sourceName(s))
	}
	return entries, nil
}
