// Package oci turns the layers of an OCI image into a composefs tree the
// way composefs-rs' cfsctl oci does: a Builder applies the uncompressed
// layer tar streams in order by the OCI image spec's layer rules
// (whiteouts, opaque directories, hardlinks across layers), stores the
// content of regular files larger than 64 bytes as objects (smaller ones
// stay inline), applies composefs-rs' OCI transform, and gives the tree as
// dumpfile entries and as a composefs image.
//
// Fetching images (registries, layouts, archives, decompression) is not
// done here: ApplyLayer reads one uncompressed tar stream and returns its
// sha256 for the caller to compare with the config's diff_id.
package oci
