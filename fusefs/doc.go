// Package fusefs serves a composefs image through FUSE, showing exactly what
// the kernel shows when the same image is mounted as EROFS under a read-only
// overlayfs with the object store as a data-only lower layer:
//
//	mount -t erofs -o ro IMAGE E
//	mount -t overlay overlay -o ro,metacopy=on,redirect_dir=on,lowerdir=E::OBJECTS M
//
// That means: character devices 0/0 (overlay whiteouts) cannot be looked up
// and are left out of the root's listing; overlay's private trusted.overlay.*
// xattrs are hidden and the escaped trusted.overlay.overlay.X ones are shown
// as trusted.overlay.X; external files (metacopy + redirect) read their
// content from the object named by the redirect, checked against the
// metacopy's fs-verity digest according to the VerityMode.
//
// Two differences come with the default, where the kernel opens files by
// itself (no Config.Passthrough): a missing or tampered object fails the
// file's first read rather than its open (for a large object checked block
// by block as it is read, the first read of a tampered block, as with the
// kernel's fs-verity), and a file reads up to the size
// its inode gives, where overlayfs reads the object to its own end (the
// two differ only in an image whose inode's size is not its object's,
// which mkcomposefs never writes).
//
// The server is stateless: FS is a go-fuse RawFileSystem whose node ids are
// derived from the image's nids, so every request is answered from the
// image alone and nothing is kept per inode the kernel has seen; memory
// grows with the files held open (and a bounded read-ahead), not with what
// was visited. The kernel is
// told to cache entries, attributes, negative lookups, symlinks, directory
// listings and file pages for as long as the mount lives, because an image
// never changes; OPENDIR and FLUSH are declined so that the kernel stops
// sending them. By default OPEN is declined too, so that the kernel opens
// files itself and keeps their pages; with Config.Passthrough, external
// files are handed to the kernel with FUSE passthrough where it allows.
//
// When lookups walk a directory in name order (a program reading its files
// one after another), the objects of the next small files are opened and
// verified in the background, several at a time, and kept ready for their
// first READ (or OPEN) (ahead.go): disk latency and hashing leave the path of each request.
//
// Mount serves through package fuseconn: where the kernel offers FUSE over
// io_uring, requests then come through per-CPU rings served by threads
// pinned to their CPU (package fuseuring), with INIT, FORGET and
// interrupts on /dev/fuse; one go-fuse ProtocolServer decodes both, so an
// interrupted OPEN (with Config.Passthrough) stops hashing its object
// either way (the request's
// cancel channel is the context handed to composefs.FS.OpenObject).
//
// The request methods can be called directly, without a mount, which is how
// most of the tests drive it.
package fusefs
