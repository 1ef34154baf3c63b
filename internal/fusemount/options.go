package fusemount

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/composefs/composefs-go/composefs"
)

// settings is everything the command line says, from flags and -o options
// alike.
type settings struct {
	image, mountpoint string
	basedirs          []string
	repo              string
	digest            string
	verity            composefs.VerityMode
	foreground        bool
	allowOther        bool
	debug             bool
	noReadAhead       bool
	noIOUring         bool
	passthrough       bool
	noOpen            bool // passthrough off, whatever else asks
	checkObjects      bool
	prefetch          bool
	// inRepo: IMAGE names an image of the repository, never a file,
	// whatever the current directory holds (cfsctl's mounts).
	inRepo  bool
	logFile string
	// Remote stores: where fetched objects are kept and how many bytes
	// of them at most (0: no bound), and the files that hold the
	// trusted CAs and a token or headers for private stores.
	cacheDir              string
	cacheSize             int64
	fetchTimeout          time.Duration // 0: the store's default
	caFile                string
	tokenFile, headerFile string
	fsname                string
	// treeCache is where the block sums of large objects are kept
	// (verity.Trees): "" for the default place, "none" for nowhere.
	treeCache string
	// mountFlags go to the kernel (or fusermount3) as given: nosuid,
	// nodev, noexec and their opposites.
	mountFlags []string
}

// ignoredOptions are generic mount options that mean nothing here, which
// mount(8), mount.fuse3 and fstab lines pass along: the mount is always
// read-only, times never change, and the rest is for mount(8) itself.
var ignoredOptions = map[string]bool{
	"ro": true, "rw": true, "defaults": true,
	"auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "nouser": true, "users": true, "owner": true, "group": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "diratime": true, "nodiratime": true,
	"lazytime": true, "nolazytime": true, "async": true, "sync": true, "dirsync": true,
	"silent": true, "loud": true,
}

// kernelFlags pass through to the mount itself.
var kernelFlags = map[string]bool{
	"suid": true, "nosuid": true, "dev": true, "nodev": true, "exec": true, "noexec": true,
}

// addOptions applies one -o argument: comma-separated options, the same
// settings as the flags.
func (s *settings) addOptions(arg string) error {
	for _, o := range strings.Split(arg, ",") {
		if o == "" {
			continue
		}
		key, val, hasVal := strings.Cut(o, "=")
		switch {
		case key == "basedir" && hasVal:
			s.basedirs = append(s.basedirs, val)
		case key == "repo" && hasVal:
			s.repo = val
		case key == "digest" && hasVal:
			s.digest = val
		case key == "verity" && hasVal:
			m, err := composefs.ParseVerityMode(val)
			if err != nil {
				return err
			}
			s.verity = m
		case key == "log" && hasVal:
			s.logFile = val
		case key == "cache" && hasVal:
			s.cacheDir = val
		case key == "tree_cache" && hasVal:
			s.treeCache = val
		case key == "cache_size" && hasVal:
			n, err := parseSize(val)
			if err != nil {
				return fmt.Errorf("cache_size: %w", err)
			}
			s.cacheSize = n
		case key == "fetch_timeout" && hasVal:
			d, err := parseSeconds(val)
			if err != nil {
				return fmt.Errorf("fetch_timeout: %w", err)
			}
			s.fetchTimeout = d
		case key == "ca_file" && hasVal:
			s.caFile = val
		case key == "token_file" && hasVal:
			s.tokenFile = val
		case key == "header_file" && hasVal:
			s.headerFile = val
		case key == "fsname" && hasVal:
			s.fsname = val
		case key == "allow_other" && !hasVal:
			s.allowOther = true
		case key == "debug" && !hasVal:
			s.debug = true
		case key == "noreadahead" && !hasVal:
			s.noReadAhead = true
		case key == "noiouring" && !hasVal:
			s.noIOUring = true
		case key == "passthrough" && !hasVal:
			s.passthrough = true
		case key == "noopen" && !hasVal:
			s.noOpen = true
		case key == "check_objects" && !hasVal:
			s.checkObjects = true
		case key == "prefetch" && !hasVal:
			s.prefetch = true
		case kernelFlags[key] && !hasVal:
			s.mountFlags = append(s.mountFlags, key)
		case ignoredOptions[key] && !hasVal,
			key == "subtype", key == "comment", strings.HasPrefix(key, "x-"):
		default:
			return fmt.Errorf("unknown mount option %q", o)
		}
	}
	return nil
}

// minFetchTimeout and maxFetchTimeout bound --fetch-timeout: a shorter
// wait fails every request, a longer one is for a hung server, not a slow
// one.
const (
	minFetchTimeout = 10 * time.Millisecond
	maxFetchTimeout = time.Hour
)

// parseSeconds reads a timeout in seconds, a decimal fraction allowed,
// from minFetchTimeout to maxFetchTimeout.
func parseSeconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || strings.ContainsAny(v, "xXpPeEnN_") {
		return 0, fmt.Errorf("%q: not a number of seconds", v)
	}
	if f < minFetchTimeout.Seconds() || f > maxFetchTimeout.Seconds() {
		return 0, fmt.Errorf("%q: want from %v to %v", v, minFetchTimeout, maxFetchTimeout)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// parseSize reads a size in bytes: digits, optionally followed by K, M,
// G or T (powers of 1024), alone or with "B" or "iB" after them.
func parseSize(v string) (int64, error) {
	rest := strings.TrimLeft(v, "0123456789")
	digits, unit := v[:len(v)-len(rest)], strings.ToUpper(rest)
	if digits == "" {
		return 0, fmt.Errorf("size %q: not a number of bytes", v)
	}
	shift := -1
	switch unit {
	case "", "B":
		shift = 0
	default:
		if i := strings.IndexByte("KMGT", unit[0]); i >= 0 {
			switch unit[1:] {
			case "", "B", "IB":
				shift = 10 * (i + 1)
			}
		}
	}
	if shift < 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", v, rest)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q: too large", v)
	}
	return n << shift, nil
}
