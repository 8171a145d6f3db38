package revocation

import "fmt"

// MetaReader reads a meta value of the store.
type MetaReader interface {
	GetMeta(key string, v any) error
}

// StoredCRL returns the DER of the last CRL the server built and persisted
// in st (store.ErrNotFound, wrapped, when it never built one). `lanyard
// restore` reads it from the store being replaced: that CRL lists every
// revocation up to the moment the store was lost.
func StoredCRL(st MetaReader) ([]byte, error) {
	var m storedCRL
	if err := st.GetMeta(metaKey, &m); err != nil {
		return nil, fmt.Errorf("stored CRL: %w", err)
	}
	return m.DER, nil
}
