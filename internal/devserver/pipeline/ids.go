package pipeline

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"unicode/utf16"
)

// The service derives stage, phase, job and step ids from their instance
// names rather than minting random GUIDs: the L1 sample's jobId, stageId,
// phaseId and both step ids are exactly recordID("job.__default"),
// recordID("__default"), recordID("job"), recordID("job.__default.checkout")
// and recordID("job.__default.cmdline"). Reproducing the scheme makes the
// compiled ids the ones the real service would send, and golden files stable.
//
// The scheme (Microsoft.TeamFoundation.DistributedTask.Pipelines
// TimelineRecordIdGenerator.GetId, read in the decompiled WebApi and in
// runner.server's SDK fork): SHA-1 over a fixed 16-byte prefix followed by
// the name in UTF-16 big-endian; the first 16 bytes of the digest, with the
// high nibble of byte 7 set to 5, are taken as a .NET Guid, whose first three
// fields are little-endian. PipelineUtilities lower-cases the name first.
var recordIDPrefix = [16]byte{
	0x53, 0x37, 0x1b, 0x7f, 0xd4, 0x61, 0x4b, 0x5d,
	0xc5, 0xe2, 0x27, 0x33, 0x53, 0x23, 0xdf, 0x24,
}

// recordID returns the service's id for an instance name (case-insensitive).
func recordID(instanceName string) string {
	h := sha1.New()
	h.Write(recordIDPrefix[:])
	name := strings.ToLower(instanceName)
	buf := make([]byte, 0, 2*len(name))
	for _, u := range utf16.Encode([]rune(name)) {
		buf = append(buf, byte(u>>8), byte(u))
	}
	h.Write(buf)
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[7] = b[7]&0x0f | 0x50
	// .NET Guid(byte[]) reads Data1..Data3 little-endian.
	g := [16]byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]}
	return formatGUID(g)
}

// emulatorNamespace is the RFC 4122 namespace of everything the emulator
// names that the real service would take from its database (plan ids,
// repository ids, identities, unknown task ids).
var emulatorNamespace = [16]byte{
	0xdc, 0x84, 0x86, 0x47, 0x0b, 0xa0, 0x4d, 0x7e,
	0x9b, 0xc3, 0x55, 0x27, 0x4f, 0x90, 0x65, 0x9d,
}

// nameUUID is an RFC 4122 version 5 UUID of name in the emulator namespace:
// stable across runs, distinct per name.
func nameUUID(name string) string {
	h := sha1.New()
	h.Write(emulatorNamespace[:])
	h.Write([]byte(name))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b)
}

func formatGUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// isGUID reports whether s is a GUID in the D format (8-4-4-4-12 hex).
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
