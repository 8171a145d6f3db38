package doctor

import (
	"errors"
	"strings"
)

// Errors of splitCommandLine.
var (
	errUnterminated = errors.New("unterminated quote")
	errShellSyntax  = errors.New("uses shell syntax doctor cannot follow (pipes, redirections, substitutions, variables)")
)

// splitCommandLine splits a credential_process line into words the way a
// POSIX shell (sh -c, how the AWS SDKs run it on Unix) does for the simple
// commands lanyard writes: blanks separate words; single quotes keep
// everything literally; double quotes keep everything but \" \\ \$ \` and
// backslash-newline; an unquoted backslash escapes the next byte. Unquoted
// shell operators and expansions ($, `, |, &, ;, <, >, parentheses) are
// refused rather than guessed at.
func splitCommandLine(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`\n", line[i+1]) >= 0 {
					i++
					if line[i] != '\n' {
						cur.WriteByte(line[i])
					}
					continue
				}
				if line[i] == '$' || line[i] == '`' {
					return nil, errShellSyntax
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errUnterminated
			}
		case c == '\\':
			in = true
			if i+1 < len(line) {
				i++
				if line[i] != '\n' {
					cur.WriteByte(line[i])
				}
			}
		case strings.IndexByte("$`|&;<>()", c) >= 0:
			return nil, errShellSyntax
		case c == '#' && !in:
			i = len(line) // a comment runs to the end of the line
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
