package fusemount

import (
	"fmt"
	"strings"

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
	noOpen            bool
	checkObjects      bool
	logFile           string
	fsname            string
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
		case key == "noopen" && !hasVal:
			s.noOpen = true
		case key == "check_objects" && !hasVal:
			s.checkObjects = true
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
