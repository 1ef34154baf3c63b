//go:build amd64 && !purego

package verity

import "golang.org/x/sys/cpu"

//go:generate go run sha256x2_gen.go

// sha256Block2x writes the SHA-256 of a to out[:32] and of b to out[32:].
//
//go:noescape
func sha256Block2x(out *[64]byte, a, b *[BlockSize]byte)

func cpuHasSHA() bool

// have2x: the SHA extensions (and the SSE the code around them uses).
var have2x = cpuHasSHA() && cpu.X86.HasSSSE3 && cpu.X86.HasSSE41
