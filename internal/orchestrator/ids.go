package orchestrator

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// idGen makes run ids that sort by creation time: 11 hex digits of
// milliseconds, then a counter that restarts each millisecond, then random
// bits so that two orchestrators sharing a store do not collide.
type idGen struct {
	lastMS int64
	n      uint32
	salt   uint16
}

func newIDGen() *idGen {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return &idGen{salt: binary.BigEndian.Uint16(b[:])}
}

func (g *idGen) next(now time.Time) string {
	ms := now.UnixMilli()
	if ms <= g.lastMS {
		ms = g.lastMS // a clock that steps back keeps ids ordered
		g.n++
	} else {
		g.lastMS = ms
		g.n = 0
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%011x%04x%04x", ms, g.n&0xffff, binary.BigEndian.Uint16(r[:])^g.salt)
}
