package verity

import "encoding/binary"

// The fs-verity ioctls (include/uapi/linux/fsverity.h), encoded by hand so
// the byte layout is explicit and testable.

// Linux _IOC encoding as on x86, arm, arm64, riscv, s390 and loongarch:
// nr in bits 0-7, type in 8-15, size in 16-29, direction in 30-31.
const (
	iocWrite = 1 // _IOC_WRITE: userspace passes data in
	iocRead  = 2 // _IOC_READ: the kernel passes data out
)

func ioc(dir, typ, nr, size uint32) uint32 {
	return dir<<30 | size<<16 | typ<<8 | nr
}

func iow(typ, nr, size uint32) uint32  { return ioc(iocWrite, typ, nr, size) }
func iowr(typ, nr, size uint32) uint32 { return ioc(iocRead|iocWrite, typ, nr, size) }

const (
	// sizeofEnableArg is sizeof(struct fsverity_enable_arg).
	sizeofEnableArg = 128
	// sizeofDigestHeader is sizeof(struct fsverity_digest) without the
	// flexible digest array: __u16 digest_algorithm, __u16 digest_size.
	sizeofDigestHeader = 4
)

var (
	// FS_IOC_ENABLE_VERITY = _IOW('f', 133, struct fsverity_enable_arg)
	fsIocEnableVerity = iow('f', 133, sizeofEnableArg)
	// FS_IOC_MEASURE_VERITY = _IOWR('f', 134, struct fsverity_digest)
	fsIocMeasureVerity = iowr('f', 134, sizeofDigestHeader)
)

// encodeEnableArg lays out struct fsverity_enable_arg:
//
//	u32 version; u32 hash_algorithm; u32 block_size; u32 salt_size;
//	u64 salt_ptr; u32 sig_size; u32 reserved1; u64 sig_ptr; u64 reserved2[11]
//
// with no salt and no signature, so no pointers are needed.
func encodeEnableArg(alg Algorithm) [sizeofEnableArg]byte {
	var a [sizeofEnableArg]byte
	ne := binary.NativeEndian
	ne.PutUint32(a[0:], 1) // version
	ne.PutUint32(a[4:], uint32(alg))
	ne.PutUint32(a[8:], BlockSize)
	// salt_size, salt_ptr, sig_size, sig_ptr and the reserved words stay 0.
	return a
}

// newDigestArg returns a struct fsverity_digest buffer with room for a
// digest of up to max bytes, digest_size set to max as the kernel expects.
func newDigestArg(max int) []byte {
	b := make([]byte, sizeofDigestHeader+max)
	binary.NativeEndian.PutUint16(b[2:], uint16(max))
	return b
}

// decodeDigestArg reads back the algorithm and digest the kernel filled in.
func decodeDigestArg(b []byte) (Algorithm, []byte, bool) {
	if len(b) < sizeofDigestHeader {
		return 0, nil, false
	}
	alg := Algorithm(binary.NativeEndian.Uint16(b[0:]))
	n := int(binary.NativeEndian.Uint16(b[2:]))
	if n > len(b)-sizeofDigestHeader {
		return 0, nil, false
	}
	return alg, b[sizeofDigestHeader : sizeofDigestHeader+n], true
}
