package server

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Envelope flags of a request message (gRPC, gRPC-Web, Connect
// streaming): bit 0 says the message is compressed; a request sets no
// other bit (end-of-stream and trailer flags belong to responses).
const envelopeCompressed = 0x01

// enveloped reports whether a content type frames its messages in
// 5-byte envelopes (flags, big-endian length).
func enveloped(contentType string) bool {
	return strings.HasPrefix(contentType, "application/grpc") || strings.HasPrefix(contentType, "application/connect+")
}

// checkEnvelopes checks the framing of a whole enveloped request body:
// whole envelopes only, request flags only, the compressed flag only
// with a compression named. connect-go answers broken framing with
// Internal (its envelope reader is shared with the client side, where a
// corrupt response is the server's fault); on the server it is the
// client's, so lanyard answers InvalidArgument, the code Connect and
// connect-go give a body that does not unmarshal. How many messages
// there are is left to connect-go (Unimplemented, gRPC's answer to a
// cardinality violation).
func checkEnvelopes(r *http.Request, body []byte) error {
	enc := r.Header.Get("Grpc-Encoding")
	if enc == "" {
		enc = r.Header.Get("Connect-Content-Encoding")
	}
	compressed := enc != "" && enc != "identity"
	for off := 0; off < len(body); {
		if len(body)-off < 5 {
			return fmt.Errorf("%w: request ends with %d bytes of an incomplete envelope prefix", errBadEnvelope, len(body)-off)
		}
		flags, size := body[off], binary.BigEndian.Uint32(body[off+1:off+5])
		switch {
		case flags&^envelopeCompressed != 0:
			return fmt.Errorf("%w: request envelope has flags %#02x; a request message has 0 or 1", errBadEnvelope, flags)
		case flags&envelopeCompressed != 0 && !compressed:
			return fmt.Errorf("%w: request message is flagged compressed but no compression is named", errBadEnvelope)
		case uint64(size) > uint64(len(body)-off-5):
			return fmt.Errorf("%w: request envelope promises %d bytes, %d follow", errBadEnvelope, size, len(body)-off-5)
		}
		off += 5 + int(size)
	}
	return nil
}

// writeEnvelopeError answers a framing error in the request's protocol.
func (s *Server) writeEnvelopeError(w http.ResponseWriter, r *http.Request, err error) {
	_ = connect.NewErrorWriter().Write(w, r, toConnect(s.log, r.URL.Path, err))
}
