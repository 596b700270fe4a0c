package tracer

// maxComms bounds the interned comms; host-wide there are a few hundred.
const maxComms = 4096

// comms interns process names, which repeat from event to event.
type comms map[string]string

func (c comms) intern(b []byte) string {
	if s, ok := c[string(b)]; ok {
		return s
	}
	if len(c) >= maxComms {
		clear(c)
	}
	s := string(b)
	c[s] = s
	return s
}
