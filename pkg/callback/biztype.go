package callback

// The bizType values of the seed.
const (
	BizImgGenControlConfig = "sdImgGenControlConfig"
	BizSDPreInvoke         = "sdPreInvoke"
	BizAPIPreInvoke        = "apiAccessPreInvoke"
	BizAPICommit           = "apiAccessCommit"
	BizAPIRollback         = "apiAccessRollback"
	BizTaskFinished        = "sdTaskFinished"
	BizJobFinished         = "sdJobFinished"
)

// Kind says how a bizType is answered.
type Kind int

const (
	// Async events are stored and answered 200 after the store; the platform
	// retries any other answer.
	Async Kind = iota
	// Sync events are answered with a decision within the platform's 5 s
	// budget; the platform never retries them.
	Sync
	// Unknown bizTypes are stored and answered like async events.
	Unknown
)

// MaxBizTypeLen bounds bizType: it becomes a subject token
// (sd.callback.<source>.<bizType>), and a subject longer than the NATS
// control line makes the server close the connection. ParseParams refuses a
// longer one as ErrMalformed.
const MaxBizTypeLen = 128

// KindOf classifies a bizType.
func KindOf(bizType string) Kind {
	switch bizType {
	case BizImgGenControlConfig, BizSDPreInvoke, BizAPIPreInvoke, BizAPICommit, BizAPIRollback:
		return Sync
	case BizTaskFinished, BizJobFinished:
		return Async
	}
	return Unknown
}

// SubjectToken returns bizType as a NATS subject token: characters outside
// [A-Za-z0-9_-] become '_', and an empty bizType is "_". The token is no
// longer than bizType, which ParseParams bounds (MaxBizTypeLen).
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	if isSubjectToken(s) {
		return s
	}
	out := make([]byte, 0, len(s))
	for _, c := range s {
		if subjectByte(c) {
			out = append(out, byte(c))
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}

// isSubjectToken reports whether every byte of s may stay as it is.
func isSubjectToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !subjectByte(rune(s[i])) {
			return false
		}
	}
	return true
}

func subjectByte(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
