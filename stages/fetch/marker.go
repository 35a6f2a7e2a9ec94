package fetch

import "bytes"

// commonBytes lists bytes from the most to the least frequent in typical
// HTML and its text, roughly; bytes not listed count as rarer than all.
const commonBytes = " etaoinsrhl\"=<>/dcumfpg\n.,-wybv:;0123456789k#_()xjqz"

// rarestIndex returns the index in m of its least frequent byte by
// commonBytes (the last one of equal rank).
func rarestIndex(m string) int {
	best, bestRank := 0, -1
	for i := 0; i < len(m); i++ {
		r := bytes.IndexByte([]byte(commonBytes), m[i])
		if r < 0 {
			r = len(commonBytes)
		}
		if r >= bestRank {
			best, bestRank = i, r
		}
	}
	return best
}

// containsMarker reports whether body contains m (which is not empty). It
// is bytes.Contains(body, []byte(m)), anchored on m's rarest byte: the
// markers are looked for in every 2xx body, and bytes.Index, anchored on
// the first byte, stops at every 'c' of a page for "captcha...". Like
// bytes.Index, it hands over to bytes.Contains when the anchor byte turns
// out to be common in body, so the worst case stays linear-ish.
func containsMarker(body []byte, m string) bool {
	i := rarestIndex(m)
	c := m[i]
	fails := 0
	for pos := i; pos < len(body); {
		j := bytes.IndexByte(body[pos:], c)
		if j < 0 {
			return false
		}
		start := pos + j - i
		if start+len(m) > len(body) {
			return false // no later start fits either
		}
		if string(body[start:start+len(m)]) == m {
			return true
		}
		if fails++; fails > 4+pos>>4 {
			return bytes.Contains(body[start+1:], []byte(m))
		}
		pos += j + 1
	}
	return false
}
