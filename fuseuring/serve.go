//go:build linux

package fuseuring

import (
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Handler answers one FUSE request: in is the request as the kernel lays
// it out on /dev/fuse (in header, the opcode's header, its variable part),
// out receives the reply (out header, then the rest), both as byte streams
// cut in pieces. It returns the reply's length; 0 means no reply. go-fuse's
// *fuse.ProtocolServer is one: the same one must serve the connection's
// /dev/fuse requests, since INTERRUPT (which always comes that way) can only
// stop a request its own server has in flight.
type Handler interface {
	HandleRequest(in, out [][]byte) (int, fuse.Status)
}

// SizeOfInHeader and SizeOfOutHeader are struct fuse_in_header and
// struct fuse_out_header, the same on /dev/fuse and on the rings.
const (
	SizeOfInHeader  = 40
	SizeOfOutHeader = 16
)

// PutErrorReply writes into b the whole reply that fails request unique
// with st: an out header alone. Both transports answer this way a request
// that gets no other reply, so that its caller does not wait forever.
func PutErrorReply(b []byte, unique uint64, st fuse.Status) {
	*(*uint32)(unsafe.Pointer(&b[0])) = SizeOfOutHeader
	*(*int32)(unsafe.Pointer(&b[4])) = -int32(st)
	*(*uint64)(unsafe.Pointer(&b[8])) = unique
}

// serve answers the request in e's buffers, leaves the reply there, and
// returns the commit id the reply goes back with.
func (t *Transport) serve(e *entry) uint64 {
	commit := *(*uint64)(unsafe.Pointer(&e.hdr[entCommitID]))
	payloadIn := min(int(*(*uint32)(unsafe.Pointer(&e.hdr[entPayloadSz]))), len(e.payload))
	length := int(*(*uint32)(unsafe.Pointer(&e.hdr[hdrInOut])))
	unique := *(*uint64)(unsafe.Pointer(&e.hdr[hdrInOut+8]))
	// The ring splits what /dev/fuse sends as one stream: the in header,
	// the opcode's own header in an area of its own, the rest in the
	// payload buffer. The header says how long the whole is, so the
	// opcode's header is what is left: no table of opcodes needed here.
	opLen := min(max(length-SizeOfInHeader-payloadIn, 0), opInSize)
	in := [][]byte{
		e.hdr[hdrInOut : hdrInOut+SizeOfInHeader],
		e.hdr[hdrOpIn : hdrOpIn+opLen],
		e.payload[:payloadIn],
	}
	// The reply goes the same way: its out header in the header area,
	// everything after it in the payload buffer. The handler has copied
	// the in header and the names it needs before it writes either.
	out := [][]byte{e.hdr[hdrInOut : hdrInOut+SizeOfOutHeader], e.payload}
	n, st := t.h.HandleRequest(in, out)
	if n < SizeOfOutHeader {
		// No reply (malformed request, or one the handler holds none
		// for): the entry still has to go back to the kernel, and the
		// request with it, as failed.
		if st == fuse.OK {
			st = fuse.EIO
		}
		PutErrorReply(e.hdr[hdrInOut:], unique, st)
		n = SizeOfOutHeader
	}
	*(*uint32)(unsafe.Pointer(&e.hdr[entPayloadSz])) = uint32(n - SizeOfOutHeader)
	t.served.Add(1)
	return commit
}
