package parse

import "bytes"

// precheckCannotFire reports whether precheckNodes would certainly pass
// text, judging from its bytes alone, so that the common page is not
// tokenized twice (once by the precheck, once by html.Parse). It is cheap:
// one scan for '<' (bytes.IndexByte) and a few byte comparisons per tag.
//
// It computes upper bounds of precheckNodes' two counts:
//
//   - every start tag the tokenizer returns begins at a '<' followed by an
//     ASCII letter, so their number bounds starts;
//   - every token but the last begins at a '<' or is a text token that ends
//     right before one, so at most one text token ends and one token begins
//     at each '<' (and one more text token ends at the end of the input);
//   - unclosed is never more than the formatting start tags seen so far,
//     and each of those begins at a '<' where formattingIndex matches (the
//     same test precheckNodes applies to the tag's raw bytes).
//
// Bytes inside comments, scripts or attribute values may count as tags
// here and never do in the tokenizer: the bounds are only ever too high.
// When they reach precheckNodes' thresholds, false says "tokenize to be
// sure", and precheckNodes decides exactly as it always did.
func precheckCannotFire(text []byte, maxNodes int) bool {
	var starts, estimate, formatting int
	for i := 0; ; {
		j := bytes.IndexByte(text[i:], '<')
		if j < 0 {
			break
		}
		i += j
		u := min(formatting, maxOpenElements)
		estimate += 2 * u // a text token ending here, a token beginning here
		if i+1 < len(text) && isASCIILetter(text[i+1]) {
			starts++
			estimate++
			if formattingIndex(text[i:]) >= 0 {
				formatting++
			}
		}
		if starts > maxNodes || estimate > 2*maxNodes {
			return false
		}
		i++
	}
	estimate += min(formatting, maxOpenElements) // the last text token
	return estimate <= 2*maxNodes
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
