// Package composefs is what a composefs image means: the tree the kernel
// shows when it mounts the image with EROFS and overlayfs over an object
// store, as an io/fs file system with real, verified contents.
//
// The image (package erofs) stores more than the kernel shows and shows
// some of it differently: overlay whiteouts cannot be looked up (and the
// root's listing leaves them out), the user's own trusted.overlay.X xattrs
// are stored escaped as trusted.overlay.overlay.X while overlayfs' private
// ones are hidden, and a regular file marked with trusted.overlay.metacopy
// has its bytes in the store object trusted.overlay.redirect names, checked
// against the fs-verity digest the metacopy carries. Those rules live here
// and nowhere else: the FUSE server (package fusefs), composefs-info and Go
// programs all see the image through an *FS.
//
// Two levels of API: the io/fs one (fs.FS, fs.ReadDirFS, fs.StatFS,
// fs.ReadLinkFS, by path, for programs), and one by inode for servers that
// address files by nid (Lookup, ReadDirAt, XattrNames, OpenObject).
package composefs
