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
// The image is decoded lazily: the server holds one small node per inode the
// kernel has visited and nothing else, and tells the kernel to cache entries,
// attributes, negative lookups, symlinks, directory listings and file pages
// for as long as the mount lives, because an image never changes.
//
// Node logic is testable without a mount: New, then fs.NewNodeFS on Root()
// and calling the node methods directly.
package fusefs
