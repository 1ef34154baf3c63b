//go:build !amd64 || purego

package verity

var have2x = false

func sha256Block2x(out *[64]byte, a, b *[BlockSize]byte) {
	panic("verity: sha256Block2x without the SHA extensions")
}
