package main

import (
	"errors"

	"github.com/composefs/composefs-go/dumpfile"
)

// scanDirectory reads a directory SOURCE.
func scanDirectory(s *settings) ([]dumpfile.Entry, error) {
	return nil, errors.New("directory sources are not supported yet; use --from-file")
}
