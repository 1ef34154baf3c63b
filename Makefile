# Builds the commands and installs them with their man pages:
#
#	make                                   # the binaries, in bin/
#	sudo make install                      # /usr/local/bin, /usr/local/share/man/man1
#	make install DESTDIR=/tmp/pkg PREFIX=/usr
#
# PREFIX /usr/local (or /usr) puts composefs-fuse on the search path that
# `mount -t fuse.composefs-fuse` and fstab lines find it by: mount(8) takes
# PATH out of the environment of mount.fuse3, whose /bin/sh then searches
# its default /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.
# Under any other PREFIX, name the binary in the source instead
# (`mount -t fuse PREFIX/bin/composefs-fuse#IMAGE MOUNTPOINT -o ...`), or
# link it as /sbin/mount.fuse.composefs-fuse, which install does not do:
# it writes nothing outside DESTDIR/PREFIX.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
# BUILDDIR is where the binaries are built before they are installed.
BUILDDIR ?= bin
# GO is the go command: the one on PATH, else the one the README installs
# at /usr/local/go.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
INSTALL ?= install

COMMANDS := mkcomposefs composefs-info composefs-fuse composefs-bench cfsctl
BINARIES := $(addprefix $(BUILDDIR)/,$(COMMANDS))
MANPAGES := $(addprefix docs/man/,$(addsuffix .1,$(COMMANDS)))

# The binaries record the commit they are built from (--version shows it)
# when git can read this tree; otherwise (no git, a tarball, a checkout
# owned by another user under sudo) they are built without it rather than
# not at all.
BUILDVCS ?= $(shell git status --porcelain >/dev/null 2>&1 && echo auto || echo false)

# `make` always has go build the binaries (go's cache makes an unchanged
# build cheap), so that a binary put in BUILDDIR some other way, such as a
# plain `go build` without -trimpath or the commit, is replaced. `make
# install` alone rebuilds only those missing or older than a Go source,
# go.mod or go.sum, so that `make && sudo make install` builds as the user
# and only copies as root (whose git may refuse a checkout it does not own,
# and whose build would then not record the commit).
SOURCES := go.mod go.sum $(shell find . -name '*.go' -not -name '*_test.go' -not -path './.git/*')

.PHONY: all install uninstall clean FORCE

all: $(BINARIES)

ifneq ($(MAKECMDGOALS),install)
$(BINARIES): FORCE
endif
$(BINARIES): $(SOURCES)
	$(GO) build -trimpath -buildvcs=$(BUILDVCS) -o $@ ./cmd/$(notdir $@)

install: $(BINARIES) $(MANPAGES)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 0755 $(BINARIES) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(MANPAGES) $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(COMMANDS)) \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,$(addsuffix .1,$(COMMANDS)))

clean:
	rm -f $(BINARIES)
