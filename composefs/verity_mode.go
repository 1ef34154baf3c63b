package composefs

import "fmt"

// VerityMode is the policy for checking external files against the fs-verity
// digest their metacopy xattr carries.
type VerityMode int

const (
	// VerityOn checks a file whose metacopy carries a digest before its
	// first byte is served (a large one whose block sums are kept, each
	// block before it is served); files without a digest are served
	// unchecked.
	VerityOn VerityMode = iota
	// VerityRequire is VerityOn, and also refuses external files whose
	// metacopy carries no digest.
	VerityRequire
	// VerityOff checks nothing.
	VerityOff
)

// ParseVerityMode maps "on", "require" and "off" to their mode.
func ParseVerityMode(s string) (VerityMode, error) {
	switch s {
	case "on":
		return VerityOn, nil
	case "require":
		return VerityRequire, nil
	case "off":
		return VerityOff, nil
	}
	return 0, fmt.Errorf("unknown verity mode %q (want on, require or off)", s)
}

func (m VerityMode) String() string {
	switch m {
	case VerityOn:
		return "on"
	case VerityRequire:
		return "require"
	case VerityOff:
		return "off"
	}
	return fmt.Sprintf("VerityMode(%d)", int(m))
}
