package store

import (
	"bytes"
	"testing"
)

func sampleCommand() *command {
	return &command{baseRev: 41, compactAfter: 10000, ops: []op{
		{kind: opPut, bucket: []byte("obj/pods"), key: []byte("web-1"), value: []byte(`{"name":"web-1","revision":42}`)},
		{kind: opPut, bucket: bucketLog, key: logKey(42, 0), value: []byte(`{"type":"put"}`)},
		{kind: opDelete, bucket: []byte("obj/pods"), key: []byte("web-0")},
		{kind: opPut, bucket: []byte("obj/x"), key: []byte("empty"), value: []byte{}},
	}}
}

func TestCommandCodec(t *testing.T) {
	b := sampleCommand().encode()
	c, err := decodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.encode(), b) || c.baseRev != 41 || c.compactAfter != 10000 || len(c.ops) != 4 {
		t.Fatalf("round trip: %+v", c)
	}
	// Every cut of a command, and a byte too many, is refused.
	for i := range len(b) {
		if _, err := decodeCommand(b[:i]); err == nil {
			t.Fatalf("a command cut at %d of %d bytes decoded", i, len(b))
		}
	}
	if _, err := decodeCommand(append(b, 0)); err == nil {
		t.Fatal("a command with a trailing byte decoded")
	}
}

// FuzzDecodeCommand: decoding never panics, and what decodes encodes to
// bytes that decode to the same command (varints may come non-minimal).
// (go test runs the seeds; -fuzz explores.)
func FuzzDecodeCommand(f *testing.F) {
	f.Add(sampleCommand().encode())
	f.Add((&command{}).encode())
	f.Add([]byte{cmdVersion, 0, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			return
		}
		again, err := decodeCommand(c.encode())
		if err != nil || !bytes.Equal(again.encode(), c.encode()) {
			t.Fatalf("%x: decode, encode, decode: %v", b, err)
		}
	})
}
